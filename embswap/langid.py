"""Offline language identification: which loaded pack should read each text (``language="auto"``).

Two identifiers that ship their models inside their wheels are supported (``pip install
"embswap[langid]"`` installs the default): ``py3langid`` (a naive-Bayes byte n-gram model, 140
languages) and ``lingua`` (lingua-language-detector, n-gram models in Rust, 75 languages).
benchmarks/results/langid.md measures both on held-out Bible verses; the default is picked there.

Every language the identifier knows competes, and a text goes to the candidate (loaded pack) the
identifier gives the most probability, scored by that probability: text in another language keeps
its probability on that language and falls back rather than being forced onto the nearest candidate
(scored among the candidates only, py3langid put about half of French Bible verses on the German or
English pack with confidence >= 0.9), while a Russian verse that also reads as Bulgarian keeps the
part of the probability that says Russian. Pack names are matched by their primary subtag
("zh-hans" -> "zh"), the ISO 639-1 code both identifiers use.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import EmbswapError

BACKENDS = ("py3langid", "lingua")
# Both chosen from benchmarks/results/langid.md (accuracy, speed and load time on held-out verses).
DEFAULT_BACKEND = "py3langid"
# The candidate's probability with every language competing: at 0.2 each demo language put >= 99.0 % of
# its held-out verses on its own pack, and < 1 % of another language's verses (Ukrainian beside a Russian
# pack: 0.8 %) reached a pack (benchmarks/results/langid.md).
DEFAULT_MIN_CONFIDENCE = 0.2

logger = logging.getLogger(__name__)

# py3langid also knows varieties that ISO 639-3 files under a macrolanguage: they count as it (their
# probabilities are summed), so Chinese Bible verses read as Wu are still Chinese.
MACROLANGUAGES = {"wuu": "zh", "yue": "zh", "arz": "ar", "ary": "ar", "uzs": "uz", "nn": "no", "sdh": "ku"}

_INSTALL = 'language="auto" needs a language identifier: pip install "embswap[langid]"'


@dataclass(frozen=True)
class Identification:
    """One text's identification.

    ``language``: the candidate the identifier gives the most probability (None: no candidate gets
    any); ``confidence``: that probability in [0, 1], every known language competing (0.0 when
    ``language`` is None); ``detected``: the identifier's own code for its best guess overall (another
    language when the text reads as a language that is not a candidate).
    """

    language: str | None
    confidence: float
    detected: str | None = None


def primary_code(language: str) -> str:
    """The identifier's code for an embswap language name: its primary subtag, lowercased."""
    return re.split(r"[-_]", language, maxsplit=1)[0].lower()


def supported_languages(backend: str = DEFAULT_BACKEND) -> list[str]:
    """Every language code ``backend`` can identify (ISO 639-1 where one exists); loads the identifier,
    or raises the one-line install hint when it is missing."""
    return sorted(_backend(backend).codes)


def identify(
    texts: Sequence[str],
    candidates: Sequence[str] | None = None,
    *,
    restrict: bool = False,
    backend: str = DEFAULT_BACKEND,
) -> list[Identification]:
    """Identify each text's language; ``language`` is one of ``candidates`` (embswap language names,
    returned as given; None: every language the identifier knows) or None.

    By default every known language competes: French among en/de packs is detected as French and the
    best candidate gets a confidence near 0, so routing sends it to the fallback pack.
    ``restrict=True`` scores the candidates only (their probabilities sum to 1: such text then lands
    on some candidate, usually with a lower confidence). Candidates the identifier does not know are
    never chosen.
    """
    engine = _backend(backend)
    names: dict[str, str] = {}
    # A name equal to its code wins over e.g. "de-robust-1"; otherwise the first one given.
    for name in sorted(engine.codes if candidates is None else candidates, key=lambda n: primary_code(n) != n):
        if primary_code(name) in engine.codes:
            names.setdefault(primary_code(name), name)
    if restrict and not names:
        return [Identification(None, 0.0) for _ in texts]
    found = []
    for probabilities in engine.distributions(list(texts), tuple(sorted(names)) if restrict else None):
        detected = max(probabilities, key=probabilities.get) if probabilities else None
        best = max(names, key=lambda code: probabilities.get(code, 0.0), default=None)
        if best is None or probabilities.get(best, 0.0) <= 0.0:
            found.append(Identification(None, 0.0, detected))
        else:
            found.append(Identification(names[best], probabilities[best], detected))
    return found


@dataclass(frozen=True)
class Routing:
    """Which pack each text goes to (:func:`route`, ``MultiLanguageModel.route``).

    ``languages``: the pack per text; ``confidences`` and ``detected``: the identifier's confidence
    and its own code per text; ``fallback``: indices of the texts sent to ``fallback_language``
    because their language is not loaded, unknown to the identifier, or identified with a confidence
    below ``min_confidence``.
    """

    languages: list[str]
    confidences: list[float]
    detected: list[str | None]
    fallback: list[int]
    fallback_language: str
    min_confidence: float

    @property
    def counts(self) -> dict[str, int]:
        """Texts per pack, fallbacks included."""
        out: dict[str, int] = {}
        for language in self.languages:
            out[language] = out.get(language, 0) + 1
        return out


def route(
    texts: Sequence[str],
    loaded: Sequence[str],
    fallback_language: str,
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    backend: str = DEFAULT_BACKEND,
) -> Routing:
    """Each text's pack among ``loaded``: the identified one when its confidence reaches
    ``min_confidence``, else ``fallback_language``; fallbacks are counted and logged as one warning."""
    if fallback_language not in loaded:
        raise EmbswapError(f"fallback language {fallback_language!r} is not loaded; loaded: {', '.join(loaded)}")
    found = identify(texts, loaded, backend=backend)
    languages, fallback = [], []
    for i, item in enumerate(found):
        if item.language is not None and item.confidence >= min_confidence:
            languages.append(item.language)
        else:
            languages.append(fallback_language)
            fallback.append(i)
    if fallback:
        logger.warning(
            "%d of %d texts went to the fallback pack %r: their language is not loaded (loaded: %s) or was "
            "identified with confidence below %s",
            len(fallback),
            len(found),
            fallback_language,
            ", ".join(loaded),
            min_confidence,
        )
    return Routing(
        languages,
        [f.confidence for f in found],
        [f.detected for f in found],
        fallback,
        fallback_language,
        min_confidence,
    )


def _backend(name: str):
    if name not in BACKENDS:
        raise EmbswapError(f"unknown language identifier {name!r}; expected one of: {', '.join(BACKENDS)}")
    return _load(name)


@functools.cache
def _load(name: str):
    return _Py3langid() if name == "py3langid" else _Lingua()


class _Py3langid:
    def __init__(self):
        try:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier
        except ImportError:
            raise EmbswapError(_INSTALL) from None
        self._all = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self.codes = frozenset(MACROLANGUAGES.get(code, code) for code in self._all.labels)
        self._restricted: dict[tuple[str, ...], object] = {}

    def _identifier(self, codes: tuple[str, ...]):
        identifier = self._restricted.get(codes)
        if identifier is None:
            # A shallow copy shares the model arrays; set_languages keeps column views of them.
            identifier = copy.copy(self._all)
            identifier.set_languages([c for c in self._all.labels if MACROLANGUAGES.get(c, c) in codes])
            self._restricted[codes] = identifier
        return identifier

    def distributions(self, texts: list[str], codes: tuple[str, ...] | None) -> list[dict[str, float]]:
        identifier = self._all if codes is None else self._identifier(codes)
        out = []
        for text in texts:
            merged: dict[str, float] = {}
            for code, probability in identifier.rank(text):
                code = MACROLANGUAGES.get(code, code)
                merged[code] = merged.get(code, 0.0) + float(probability)
            out.append(merged)
        return out


class _Lingua:
    def __init__(self):
        try:
            import lingua
        except ImportError:
            raise EmbswapError(_INSTALL) from None
        self._lingua = lingua
        self._languages = {lang.iso_code_639_1.name.lower(): lang for lang in lingua.Language.all()}
        self.codes = frozenset(self._languages)
        self._detectors: dict[tuple[str, ...], object] = {}

    def _detector(self, codes: tuple[str, ...]):
        detector = self._detectors.get(codes)
        if detector is None:
            builder = self._lingua.LanguageDetectorBuilder.from_languages(*(self._languages[c] for c in codes))
            detector = self._detectors[codes] = builder.build()
        return detector

    def distributions(self, texts: list[str], codes: tuple[str, ...] | None) -> list[dict[str, float]]:
        if codes is not None and len(codes) == 1:  # lingua compares two or more; one candidate is certain
            return [{codes[0]: 1.0} for _ in texts]
        detector = self._detector(codes or tuple(sorted(self.codes)))
        # No letters of any known alphabet: every value is 0, which identify() reports as nothing to go on.
        return [
            {value.language.iso_code_639_1.name.lower(): float(value.value) for value in values if value.value > 0}
            for values in (detector.compute_language_confidence_values(text) for text in texts)
        ]
