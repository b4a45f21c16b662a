"""Which offline language identifier routes sentences to packs (``language="auto"``), and at what confidence.

Both candidates ship their models inside their wheels: py3langid and lingua-language-detector. Each
identifies 500 held-out Bible verses (books 40-44, which no pack's tokenizer or parallel text reads)
per language, in en, de, ru, zh, hi (the demo's packs) and fr, ar (languages the demo does not
load), plus 100 strings of digits and punctuation, through ``embswap.langid.identify``:

* restricted to the demo's five languages (only they are scored), and
* over every language the identifier knows, answering one of the five or none (what routing does),

in a fresh process each (one thread): load time (building the identifier and identifying the
first text, which loads lazily loaded models), memory (resident set growth) and sentences per
second. For each confidence threshold, the share of verses routed to the right pack, sent to the
fallback (L1) pack, and misrouted. Writes benchmarks/results/langid.{json,md}.

    python benchmarks/langid.py            # 500 verses per language
    python benchmarks/langid.py --quick    # 50 verses per language
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    child_payload,
    environment,
    in_subprocess,
    parser,
    peak_rss_mb,
    reply,
    result_path,
    rss_mb,
    save,
    table,
    write_atomic,
)
from encoder_transfer import RETRIEVAL_BOOKS  # noqa: E402

DEMO = ["en", "de", "ru", "zh", "hi"]
OTHERS = ["fr", "ar", "uk"]  # uk: a neighbour of a loaded language (ru), the hardest case
JUNK = "digits"  # digits and punctuation: nothing to identify, must fall back
BACKENDS = ["py3langid", "lingua"]
# restricted: only the five demo languages are scored; all: every language the identifier knows competes
# and a text's confidence is the probability left on its best loaded language (embswap.langid.identify's
# default), so text in another language keeps its probability there and falls back.
MODES = {"restricted": True, "all": False}
THRESHOLDS = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1"}


def samples(per_language: int, seed: int = 0) -> dict[str, list[str]]:
    """Held-out verses per language (English: WEB, others: encoder_transfer's test translation)."""
    from embswap.data.bible import LANGUAGES, verses

    rng = random.Random(seed)
    out = {}
    for lang in DEMO + OTHERS:
        code = "4" if lang == "en" else LANGUAGES[lang][0]
        texts = [v.text for v in verses(code, books=RETRIEVAL_BOOKS)]
        out[lang] = sorted(rng.sample(texts, per_language), key=texts.index)
    out[JUNK] = [
        "".join(rng.choice("0123456789 .,:;-()") for _ in range(rng.randint(1, 20))).strip() or "0"
        for _ in range(max(per_language // 5, 10))
    ]
    return out


def child(payload: dict) -> dict:
    """One identifier, one candidate set, in a fresh process: load, memory, speed, every prediction."""
    data = samples(payload["per_language"])  # before measuring: the Bible text is not the identifier's
    texts = [t for ts in data.values() for t in ts]
    before = rss_mb()
    started = time.perf_counter()
    from embswap import langid

    options = {"restrict": payload["restrict"], "backend": payload["backend"]}
    first = langid.identify(texts[:1], DEMO, **options)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    found = langid.identify(texts, DEMO, **options)
    seconds = time.perf_counter() - started
    del first
    return {
        "load_seconds": round(load_seconds, 3),
        "memory_mb": round(peak_rss_mb() - before, 1),
        "sentences_per_second": round(len(texts) / seconds, 1),
        "languages": [f.language for f in found],
        "detected": [f.detected for f in found],
        "confidences": [round(f.confidence, 5) for f in found],
        "known": len(langid.supported_languages(payload["backend"])),
    }


def routing(truth: list[str], predicted: list, confidences: list[float], threshold: float) -> dict:
    """Per true language: % routed to its own pack, % to the fallback, % to another demo pack."""
    out = {}
    for lang in dict.fromkeys(truth):
        rows = [i for i, t in enumerate(truth) if t == lang]
        right = fallback = wrong = 0
        for i in rows:
            routed = predicted[i] if predicted[i] in DEMO and confidences[i] >= threshold else None
            if routed is None:
                fallback += 1
            elif routed == lang:
                right += 1
            else:
                wrong += 1
        n = len(rows)
        out[lang] = {
            "right": round(100 * right / n, 2),
            "fallback": round(100 * fallback / n, 2),
            "misrouted": round(100 * wrong / n, 2),
            "n": n,
        }
    return out


def measure(args) -> dict:
    per_language = 50 if args.quick else 500
    data = samples(per_language)
    truth = [lang for lang, texts in data.items() for _ in texts]
    texts = [t for ts in data.values() for t in ts]
    runs = {}
    for backend in BACKENDS:
        for mode, restrict in MODES.items():
            print(f"{backend} / {mode} ...", file=sys.stderr, flush=True)
            result = in_subprocess(
                Path(__file__),
                {"backend": backend, "restrict": restrict, "per_language": per_language},
                threads=1,
                timeout=3600,
            )
            if "error" in result:
                raise SystemExit(f"{backend}/{mode}: {result['error']}")
            predicted, confidences = result.pop("languages"), result.pop("confidences")
            detected = result.pop("detected")
            result["accuracy"] = {
                lang: round(
                    100 * sum(detected[i] == lang for i, t in enumerate(truth) if t == lang) / len(data[lang]), 2
                )
                for lang in data
                if lang != JUNK
            }
            result["routing"] = {str(t): routing(truth, predicted, confidences, t) for t in THRESHOLDS}
            mistakes = {}
            for i, t in enumerate(truth):
                if t != JUNK and detected[i] != t and len(mistakes.setdefault(t, [])) < 3:
                    mistakes[t].append({"text": texts[i], "as": detected[i], "confidence": confidences[i]})
            result["examples_of_mistakes"] = mistakes
            runs[f"{backend}/{mode}"] = result
    return {"per_language": {lang: len(ts) for lang, ts in data.items()}, "runs": runs}


def demo_routed(run: dict, threshold: float) -> float:
    """% of the demo languages' verses routed to their own pack at ``threshold``."""
    rows = run["routing"][str(threshold)]
    return round(sum(rows[lang]["right"] * rows[lang]["n"] for lang in DEMO) / sum(rows[lang]["n"] for lang in DEMO), 2)


def render(report: dict) -> str:
    env = report["environment"]
    runs = report["runs"]
    langs = DEMO + OTHERS
    lines = [
        '# Language identification for routing (`language="auto"`)',
        "",
        f"Held-out Bible verses (books 40-44), {report['per_language']['en']} per language, plus "
        f"{report['per_language'][JUNK]} strings of digits and punctuation; one thread, each identifier in a "
        f"fresh process. Machine: {env['cpu']}, {env['cores']} cores (shared), load {env['load_average_start']} at "
        f"start. Command: `{env['command']}`.",
        "",
        "## Accuracy (% identified as the right language), speed, load time, memory",
        "",
        "`restricted`: only en, de, ru, zh, hi are scored (fr, ar and uk cannot be right there). `all`: every "
        "language the identifier knows competes.",
        "",
        "| identifier / candidates | " + " | ".join(langs) + " | sentences/s | load s | memory MB |",
        "|---" * (len(langs) + 4) + "|",
    ]
    for name, run in runs.items():
        cells = [f"{run['accuracy'][lang]:.1f}" if name.endswith("all") or lang in DEMO else "–" for lang in langs]
        cells = [f"**{c}**" if c not in ("–", "100.0") else c for c in cells]
        lines.append(
            f"| {name} ({run['known']} languages) | "
            + " | ".join(cells)
            + f" | {run['sentences_per_second']:,.0f} | {run['load_seconds']:.2f} | {run['memory_mb']:.0f} |"
        )
    lines += [
        "",
        "## Routing with the demo's five packs loaded, by confidence threshold",
        "",
        "A verse goes to the identified pack when it is one of the five and the confidence reaches the "
        "threshold, else to the fallback (L1) pack. `right`: % of the five languages' verses routed to "
        "their own pack; `misrouted`: % of them sent to another language's pack; `fr/ar/uk/digits fallback`: % of "
        "text in no loaded language that falls back (the rest is misrouted).",
        "",
        "| identifier / candidates | threshold | right | worst demo language | fallback | misrouted "
        "| fr fallback | ar fallback | uk fallback | digits fallback |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        for t in THRESHOLDS:
            rows = run["routing"][str(t)]
            n = sum(rows[lang]["n"] for lang in DEMO)
            fallback = sum(rows[lang]["fallback"] * rows[lang]["n"] for lang in DEMO) / n
            wrong = sum(rows[lang]["misrouted"] * rows[lang]["n"] for lang in DEMO) / n
            lines.append(
                f"| {name} | {t} | {demo_routed(run, t):.2f} | {worst_demo_language(run, t)} | {fallback:.2f} | "
                f"{wrong:.2f} | {rows['fr']['fallback']:.1f} | {rows['ar']['fallback']:.1f} | "
                f"{rows['uk']['fallback']:.1f} | {rows[JUNK]['fallback']:.1f} |"
            )
    lines += ["", "## Choice", "", choice(report), ""]
    return "\n".join(lines)


def worst_demo_language(run: dict, threshold: float) -> str:
    rows = run["routing"][str(threshold)]
    lang = min(DEMO, key=lambda code: rows[code]["right"])
    return f"{lang} {rows[lang]['right']:.1f}"


def misrouted(run: dict, threshold: float) -> float:
    """% of the demo languages' verses sent to another demo language's pack."""
    rows = run["routing"][str(threshold)]
    return round(sum(rows[x]["misrouted"] * rows[x]["n"] for x in DEMO) / sum(rows[x]["n"] for x in DEMO), 2)


def choice(report: dict) -> str:
    """Why embswap.langid's defaults are what they are, with this run's figures."""
    from embswap.langid import DEFAULT_MIN_CONFIDENCE as t

    py, lingua = report["runs"]["py3langid/all"], report["runs"]["lingua/all"]
    restricted = report["runs"]["py3langid/restricted"]["routing"][str(t)]
    others = py["routing"][str(t)]
    return (
        f"Default: **py3langid, every language competing, `min_confidence={t}`** (embswap/langid.py): a text goes "
        f"to the loaded language the identifier gives the most probability when that probability is at least {t}. "
        f"At {t} it routes {demo_routed(py, t):.2f} % of the five demo languages' verses to their own pack (worst "
        f"{worst_demo_language(py, t)} %), misroutes {misrouted(py, t):.2f} % to another demo pack, and sends "
        f"{others['fr']['fallback']:.1f} % of French, {others['ar']['fallback']:.1f} % of Arabic, "
        f"{others['uk']['fallback']:.1f} % of Ukrainian (a neighbour of the Russian pack) and "
        f"{others[JUNK]['fallback']:.1f} % of digits-only input to the fallback pack; it identifies "
        f"{py['sentences_per_second']:,.0f} sentences/s on one thread after {py['load_seconds']:.1f} s, in "
        f"{py['memory_mb']:.0f} MB. lingua with every language competing routes {demo_routed(lingua, t):.2f} % at the "
        f"same threshold, at {lingua['sentences_per_second']:,.0f} sentences/s after {lingua['load_seconds']:.0f} s and "
        f"{lingua['memory_mb']:,.0f} MB; restricted to the loaded languages either identifier puts text in other "
        f"languages on a loaded pack (py3langid at {t}: {100 - restricted['fr']['fallback']:.1f} % of French, "
        f"{100 - restricted['ar']['fallback']:.1f} % of Arabic and {100 - restricted['uk']['fallback']:.1f} % of "
        "Ukrainian verses misrouted), which routing must not do. Scoring the best loaded language's share of the "
        "open-set probability (instead of requiring the overall best guess to be loaded) keeps a Russian verse that "
        "also reads as Bulgarian on the Russian pack."
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    payload = child_payload(args)
    if payload is not None:
        reply(child(payload))
        return
    os.environ.update(ONE_THREAD)  # the children inherit it: BLAS and Rust thread pools of one thread
    env = environment(args)
    report = {"environment": env, **measure(args)}
    from embswap.langid import DEFAULT_MIN_CONFIDENCE

    save(args, "langid", report)
    markdown = render(report)
    write_atomic(result_path(args, "langid", "md"), markdown)
    print(markdown)
    print(
        table(
            "demo languages routed right (%)",
            ["run", f"t={DEFAULT_MIN_CONFIDENCE}"],
            [[name, demo_routed(run, DEFAULT_MIN_CONFIDENCE)] for name, run in report["runs"].items()],
        )
    )


if __name__ == "__main__":
    main()
