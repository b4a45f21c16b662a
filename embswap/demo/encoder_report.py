"""The encoder demo's report: Markdown, JSON and a bar chart under OUTPUT/report, results in the store and its cards.

``store/eval_results.json`` holds the measured numbers per language (what `embswap push` uploads and
the cards read); every artifact folder and the store get a README.md card carrying them.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..io import atomic_folder
from .bars import GENRE_MARGIN_BAR, GENRE_OF_ENGLISH_BAR, RETRIEVAL_BAR, RETRIEVAL_BAR_OTHER

# The bar: zero-shot genre >= 90 % of English and >= 15 points above the best control;
# retrieval top-1 both ways >= 90 % for German, >= 80 % for the other languages.


def targets(row: dict) -> dict:
    """Which of the demo's targets one language row meets."""
    bar = RETRIEVAL_BAR.get(row["language"], RETRIEVAL_BAR_OTHER)
    retrieval = row["retrieval"]
    return {
        "genre": row["genre_of_english"] >= GENRE_OF_ENGLISH_BAR
        and row["genre_margin_over_controls"] >= GENRE_MARGIN_BAR,
        "retrieval": min(retrieval["top1_l2_to_en"], retrieval["top1_en_to_l2"]) >= bar,
    }


def eval_results(results: dict) -> dict:
    """``{task: {language: {metric: value}}}``: the shape cards pick a pack's language from."""
    genre, retrieval = {"en": dict(results["english"])}, {"en": dict(results["ceiling_en_en"])}
    for row in results["languages"]:
        genre[row["language"]] = {
            **row["genre"],
            "raw_text_accuracy": row["genre_raw_text"]["accuracy"],
            "random_pack_accuracy": row["genre_random_pack"]["accuracy"],
            "majority_accuracy": results["majority"]["accuracy"],
        }
        retrieval[row["language"]] = {
            **row["retrieval"],
            "raw_text_top1_l2_to_en": row["retrieval_raw_text"]["top1_l2_to_en"],
        }
    books = ", ".join(map(str, results["held_out_books"]))
    return {
        f"genre zero-shot (held-out books {books})": genre,
        f"retrieval against English (held-out books {books})": retrieval,
    }


def markdown(results: dict) -> str:
    english, majority, ceiling = results["english"], results["majority"], results["ceiling_en_en"]
    head = (
        "linear probe on the pooled vector, encoder frozen"
        if results["genre_head"] == "probe"
        else "step 3 fine-tuning, word embeddings frozen"
    )
    lines = [
        f"# embswap demo: {results['model']} learns new languages through language packs",
        "",
        f"Body frozen; each pack trained with the `align` objective on training-book verse pairs. Genre head: "
        f"{head}, trained on English only. Scored on held-out books {', '.join(map(str, results['held_out_books']))}, "
        "which no stage read.",
        "",
        "## Zero-shot genre classification (accuracy / macro-F1, %)",
        "",
        "| language | zero-shot | macro-F1 | raw text (original model) | random pack | majority | % of English | "
        "margin over best control | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["languages"]:
        met = targets(row)
        lines.append(
            f"| {row['language']} | {row['genre']['accuracy']:.1f} | {row['genre']['macro_f1']:.1f} | "
            f"{row['genre_raw_text']['accuracy']:.1f} | {row['genre_random_pack']['accuracy']:.1f} | "
            f"{majority['accuracy']:.1f} | {row['genre_of_english']:.1f} | {row['genre_margin_over_controls']:+.1f} | "
            f"{'met' if met['genre'] else 'not met'} |"
        )
    lines += [
        f"\nEnglish in-language: {english['accuracy']:.1f} / {english['macro_f1']:.1f} ({english['n']} rows).",
        "",
        "## Retrieval against English (top-1 both ways, MRR, %)",
        "",
        "| language | top-1 L2→en | top-1 en→L2 | MRR L2→en | raw text top-1 L2→en / en→L2 | target |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["languages"]:
        r, raw = row["retrieval"], row["retrieval_raw_text"]
        lines.append(
            f"| {row['language']} | {r['top1_l2_to_en']:.1f} | {r['top1_en_to_l2']:.1f} | {r['mrr_l2_to_en']:.1f} | "
            f"{raw['top1_l2_to_en']:.1f} / {raw['top1_en_to_l2']:.1f} | "
            f"{'met' if targets(row)['retrieval'] else 'not met'} |"
        )
    lines.append(
        f"\nEnglish↔English ceiling (WEB vs KJV 2000): {ceiling['top1_l2_to_en']:.1f} / "
        f"{ceiling['top1_en_to_l2']:.1f} ({ceiling['n']} verses)."
    )
    if "cross_lingual_de_ru" in results:
        cross = results["cross_lingual_de_ru"]
        lines.append(
            f"Two packs, no English between them: German queries → Russian verses top-1 "
            f"{cross['top1_de_to_ru']:.1f}, Russian → German {cross['top1_ru_to_de']:.1f}."
        )
    lines += [
        "",
        "## Packs",
        "",
        "| language | init | init counts | lr | steps | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["languages"]:
        p = row["pack"]
        lines.append(
            f"| {row['language']} | {p['init']} ({p['init_source']}) | {p['init_counts']} | {p['lr']:g} | "
            f"{p['steps']} | {p['minutes']} |"
        )
    routing = results.get("routing", {})
    lines += ["", "## One model, routed per sentence", ""]
    if "skipped" in routing:
        lines.append(f"Skipped: {routing['skipped']}")
    else:
        lines.append("| text | routed to | confidence |\n|---|---|---|")
        lines += [
            f"| {t} | {lang} | {c} |"
            for t, lang, c in zip(routing["texts"], routing["routed_to"], routing["confidences"])
        ]
        lines.append(
            f"\nFallbacks to the English pack in this list: {len(routing['fallback'])}. Every held-out verse "
            f"routed (confidence >= {routing.get('min_confidence', '?')}), % to the right pack: "
            + ", ".join(
                f"{lang} {share:.1f} % of {routing['n_per_language'][lang]:,}"
                for lang, share in routing["routed_correctly"].items()
            )
            + "."
        )
    lines += ["", "## What each stage read", "", "| stage | rows | books |", "|---|---|---|"]
    lines += [f"| {stage} | {r['rows']} | {_ranges(r['books'])} |" for stage, r in results["reads"].items()]
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in results["timings_seconds"].items())
    load = results["environment"]["load_average_end"]
    lines += [
        "",
        f"Wall time {results['wall_seconds'] / 60:.1f} minutes ({timings}); "
        f"{results['environment']['torch_threads']} torch threads, load average at the end {load[0]}.",
    ]
    return "\n".join(lines) + "\n"


def _ranges(books: list[int]) -> str:
    out, start = [], None
    for i, book in enumerate(books):
        if start is None:
            start = book
        if i + 1 == len(books) or books[i + 1] != book + 1:
            out.append(str(start) if start == book else f"{start}-{book}")
            start = None
    return ", ".join(out)


def bar_chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["languages"]
    names = [r["language"] for r in rows]
    fig, (genre_ax, retrieval_ax) = plt.subplots(1, 2, figsize=(11, 4.6))
    bars = [
        ("zero-shot", [r["genre"]["accuracy"] for r in rows]),
        ("raw text", [r["genre_raw_text"]["accuracy"] for r in rows]),
        ("random pack", [r["genre_random_pack"]["accuracy"] for r in rows]),
    ]
    _grouped_bars(genre_ax, len(names), bars)
    genre_ax.axhline(results["english"]["accuracy"], color="black", linestyle="--", label="English in-language")
    genre_ax.axhline(results["majority"]["accuracy"], color="grey", linestyle=":", label="majority")
    genre_ax.set_title("genre, held-out books (accuracy %)")
    bars = [
        ("L2→en", [r["retrieval"]["top1_l2_to_en"] for r in rows]),
        ("en→L2", [r["retrieval"]["top1_en_to_l2"] for r in rows]),
        ("raw text L2→en", [r["retrieval_raw_text"]["top1_l2_to_en"] for r in rows]),
    ]
    _grouped_bars(retrieval_ax, len(names), bars)
    retrieval_ax.axhline(
        results["ceiling_en_en"]["top1_l2_to_en"], color="black", linestyle="--", label="en↔en ceiling"
    )
    retrieval_ax.set_title("retrieval top-1, held-out books (%)")
    for ax in (genre_ax, retrieval_ax):
        ax.set_xticks([x + 0.4 - 0.4 / len(bars) for x in range(len(names))], names)  # under the middle of each group
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3)  # below: bars reach 100
    fig.suptitle(f"embswap demo: {results['model']} + new language packs (body frozen)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_cards(store, measured: dict) -> None:
    """store/eval_results.json and a README.md card (with the measured results) in every artifact folder."""
    from ..cards import artifact_card, store_card, write_card
    from ..constants import EVAL_RESULTS
    from ..layout import artifact_folders

    (store.path / EVAL_RESULTS).write_text(json.dumps(measured, indent=2, sort_keys=True), encoding="utf-8")
    for folder in artifact_folders(store.path):
        write_card(artifact_card(folder, eval_results=measured), folder)
    write_card(store_card(store.path, eval_results=measured), store.path)


def write_encoder_report(results: dict, output: Path, store) -> Path:
    """results.json, results.md and results.png under ``output/report``; results and cards in the store."""
    for row in results["languages"]:
        row["targets_met"] = targets(row)
    folder = Path(output) / "report"
    with atomic_folder(folder) as tmp:
        (tmp / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
        (tmp / "results.md").write_text(markdown(results), encoding="utf-8")
        bar_chart(results, tmp / "results.png")
    write_cards(store, eval_results(results))
    return folder


def _grouped_bars(ax, groups: int, bars: list[tuple[str, list[float]]]) -> None:
    """One bar per (label, values) series, side by side within each of ``groups`` groups."""
    width = 0.8 / len(bars)
    for i, (label, values) in enumerate(bars):
        ax.bar([x + i * width for x in range(groups)], values, width, label=label)
