"""The demo's routing showcase: one loaded model sends each held-out verse to its pack."""

from __future__ import annotations

from ..errors import EmbswapError
from ..store import Store


def routing_showcase(store: Store, verses: dict[str, list[str]]) -> dict:
    """ROUTING HOOK: one loaded model routes each text to its pack (``language="auto"``, embswap/langid.py).

    ``verses``: held-out verses per language. Reports the share routed to the right pack per language
    and a mixed list (each language's first verse) with where each went; skipped, with the reason,
    where no language identifier is installed.
    """
    from ..langid import DEFAULT_BACKEND, supported_languages
    from ..multilang import load

    try:
        supported_languages(DEFAULT_BACKEND)
    except EmbswapError as err:  # an optional showcase: the identifier is an extra
        return {"skipped": str(err)}
    model = load(store, list(verses), language="auto")
    per_language = {lang: model.route(texts) for lang, texts in verses.items()}
    mixed = [texts[0] for texts in verses.values()]
    routing = model.route(mixed)
    accuracy = {
        lang: round(100 * sum(x == lang for x in r.languages) / len(r.languages), 1) for lang, r in per_language.items()
    }
    return {
        "routed_correctly": accuracy,
        "fallbacks": {lang: len(r.fallback) for lang, r in per_language.items()},
        "n_per_language": {lang: len(texts) for lang, texts in verses.items()},
        "texts": mixed,
        "routed_to": list(routing.languages),
        "fallback": list(routing.fallback),
        "confidences": [round(c, 3) for c in routing.confidences],
        "min_confidence": routing.min_confidence,
    }
