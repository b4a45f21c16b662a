"""Which step-2 and step-3 choices carry a task through the swap at laptop scale (docs/method.md#ablation).

Rows: the paper-literal MonoTrans recipe (random init, mlm, no noise), +noise, every init (overlap;
dictionary with N = 200 / 1000 / 5000 anchors, free and frozen; subword-mean), anchors penalty,
--robust-packs 1 and 2, mlm+align and align alone (both read parallel text), and the best
monolingual combination (BEST_MONOLINGUAL, which the reproduction also uses as "MonoTrans (embswap
defaults)"). Columns: English in-language, clean self-transfer (an English pack re-learned by the
row's own step 2, never seen by fine-tuning), zero-shot German, Russian and Hindi on held-out books,
the controls (majority class; the same task model with an untrained pack), and the wall minutes of
the row's artifacts. Every number is the mean over the seeds with each seed's value beside it.

    python benchmarks/quality_ablation.py                           # ~60 min on 2 CPU cores (2 jobs)
    python benchmarks/quality_ablation.py --body-from embswap-demo  # reuse the demo's English body
    python benchmarks/quality_ablation.py --quick                   # CI smoke run, under 2 minutes
    python benchmarks/quality_ablation.py --rows paper,dict1000-frozen --seeds 0,1,2

Artifacts live in --work (default benchmarks/work/); a re-run reuses them and an interrupted run
resumes. Writes benchmarks/results/quality_ablation.{md,json,png} (--quick: .quick. infix).
"""

from __future__ import annotations

import time
from pathlib import Path

import _common
from _dictionaries import dictionary_for
from _grid import Grid
from _tables import format_cell, markdown_table, mean_and_values
from _variants import PAPER_NOISE, SELF, Budget, Variant

from embswap.demo import DemoConfig

NAME = "quality_ablation"
LANGUAGES = ("de", "ru", "hi")  # German, and two non-Latin scripts
TASK = "genre"
WORK = Path(__file__).resolve().parent / "work"


def _dictionary(n: int, anchors: str = "free") -> Variant:
    label = f"dictionary N={n}" + ("" if anchors == "free" else f", anchors {anchors}")
    return Variant(label, init="dictionary", dictionary_size=n, anchors=anchors)


# The best monolingual recipe (no parallel text): one place decides it, and benchmarks/reproduce.py
# reports it as "MonoTrans (embswap defaults)". From the 2-seed run (results/quality_ablation.md):
# frozen dictionary rows beat free ones at every N; N = 5000 has the largest smallest margin over
# the better control (de / ru / hi: +18.5 / +10.4 / +10.9, against +19.3 / +6.4 / +10.7 at N = 1000);
# robust packs cost English accuracy (63.5 -> 57.8) and gained nothing, so none.
BEST_MONOLINGUAL = Variant(
    "best monolingual: dictionary N=5000, anchors frozen",
    init="dictionary",
    dictionary_size=5000,
    anchors="frozen",
)

ROWS: dict[str, Variant] = {
    "paper": Variant("MonoTrans paper-literal (random init, mlm)"),
    "noise": Variant(f"+noise ({PAPER_NOISE} in fine-tuning)", noise=PAPER_NOISE),
    "overlap": Variant("init overlap", init="overlap"),
    "dict200": _dictionary(200),
    "dict200-frozen": _dictionary(200, "frozen"),
    "dict1000": _dictionary(1000),
    "dict1000-frozen": _dictionary(1000, "frozen"),
    "dict5000": _dictionary(5000),
    "dict5000-frozen": _dictionary(5000, "frozen"),
    "subword-mean": Variant("init subword-mean", init="subword-mean"),
    "penalty": _dictionary(1000, "penalty"),
    "robust1": Variant("--robust-packs 1", robust_packs=1),
    "robust2": Variant("--robust-packs 2", robust_packs=2),
    "mlm+align": Variant("mlm+align, overlap init (uses parallel text)", objective="mlm+align", init="overlap"),
    "align": Variant("align alone, random init (uses parallel text)", objective="align"),
    "aligned": Variant("init aligned (eflomal word alignment; uses parallel text), mlm", init="aligned"),
    "mlm+align-aligned": Variant("mlm+align, aligned init (uses parallel text)", objective="mlm+align", init="aligned"),
    "dict1000-frozen-robust1": Variant(
        "dictionary N=1000, anchors frozen + --robust-packs 1 (the first default)",
        init="dictionary",
        dictionary_size=1000,
        anchors="frozen",
        robust_packs=1,
    ),
    "best": BEST_MONOLINGUAL,
}
QUICK_ROWS = ("paper", "noise", "dict200-frozen", "robust1", "mlm+align")


def budget_for(quick: bool, scale: float) -> Budget:
    """The demo's budgets (body, pack and task steps: the ablation sets the demo's defaults on the demo's
    budget) with 400 test examples: 2 seeds, about 80 packs and 8 tasks, about an hour on 2 cores."""
    if quick:
        return Budget.from_demo(DemoConfig.quick_config()).scaled(scale)
    return Budget.from_demo(DemoConfig(), eval_examples=400).scaled(scale)


def arguments():
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--results",
        dest="out",
        type=Path,
        default=_common.RESULTS,
        help="folder for the .md/.json/.png results (default benchmarks/results)",
    )
    p.add_argument("--work", type=Path, default=WORK, help="folder for the artifacts (reused across runs)")
    p.add_argument("--body-from", type=Path, help="a demo folder (or store) whose English body to reuse")
    p.add_argument(
        "--rows", help=f"comma-separated rows (default all; quick: {','.join(QUICK_ROWS)}): {','.join(ROWS)}"
    )
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1; quick: 0)")
    p.add_argument("--jobs", type=int, default=2, help="processes building artifacts in parallel (default 2)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every minute and step budget")
    args = p.parse_args()
    rows = args.rows.split(",") if args.rows else list(QUICK_ROWS if args.quick else ROWS)
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    args.row_ids = rows
    args.seed_list = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1")).split(",")]
    return args


def measure_row(grid: Grid, variant: Variant) -> dict:
    """Every cell of one row for one seed (metrics dicts, or ``{"note": ...}``)."""
    cells = {
        "english": grid.score(variant, TASK, "en", "english"),
        "self_transfer": grid.score(variant, TASK, SELF, "self"),
    }
    for language in LANGUAGES:
        cells[language] = grid.score(variant, TASK, language, "pack")
        cells[f"untrained_{language}"] = grid.score(variant, TASK, language, "random")
    packs = {language: grid.pack_info(variant, language) for language in [*LANGUAGES, SELF]}
    return {"cells": cells, "minutes": grid.row_minutes(variant, TASK), "packs": packs}


def summarise(per_seed: dict[int, dict]) -> dict:
    keys = per_seed[min(per_seed)]["cells"]
    summary = {}
    for key in keys:
        cells = [per_seed[seed]["cells"][key] for seed in sorted(per_seed)]
        note = next((c["note"] for c in cells if "note" in c), None)
        summary[key] = {"note": note} if note else mean_and_values([c["accuracy"] for c in cells])
    summary["minutes"] = mean_and_values([per_seed[seed]["minutes"] for seed in sorted(per_seed)])
    return summary


def _cell(summary: dict, key: str) -> str:
    return format_cell(summary[key])


def render_markdown(report: dict) -> str:
    columns = [
        "row",
        "English in-language",
        "clean self-transfer",
        *LANGUAGES,
        "majority",
        f"untrained pack ({' / '.join(LANGUAGES)})",
        "minutes",
    ]
    lines = []
    for row in report["rows"]:
        s = row["summary"]
        untrained = " / ".join(_cell(s, f"untrained_{lang}") for lang in LANGUAGES)
        lines.append(
            [
                row["system"],
                _cell(s, "english"),
                _cell(s, "self_transfer"),
                *(_cell(s, lang) for lang in LANGUAGES),
                f"{report['majority']['accuracy']:.1f}",
                untrained,
                format_cell(s["minutes"]),
            ]
        )
    b, body = report["budget"], report["body"]
    seeds = report["seeds"]
    over = (
        f"mean over seeds {', '.join(str(s) for s in seeds)} with each seed's value in brackets"
        if len(seeds) > 1
        else f"one seed ({seeds[0]})"
    )
    notes = [
        f"Genre accuracy (%) on {report['n_test']} held-out examples per language (books {report['test_books']}), "
        f"the same task model for every language; {over}.",
        f"Budgets (steps; minutes are only safety caps): each pack {b['pack_steps']} steps of {b['batch_size']} × "
        f"{b['mlm_seq_len']} tokens (lr {b['transfer_lr']:g}; ≤ {b['pack_minutes']:g} min); each task "
        f"{b['task_steps']} steps of {b['batch_size']} examples (lr {b['finetune_lr']:g}; ≤ {b['task_minutes']:g} "
        f"min); English body: {body['source']} "
        f"({body['minutes']} min, {body['steps']} steps, preset {body['preset']}).",
        "Minutes: wall time of the row's packs, task and scores (shared artifacts counted in full, the "
        "English body not counted); artifacts reused from an earlier run keep the time they took then.",
        "Clean self-transfer: an English pack re-learned from other translations (KJV 2000, BBE) by the row's "
        "objective from random rows (an init from the English pack would copy its rows), never seen by "
        "fine-tuning. Robust packs: embswap.train.robust.relearn_l1_packs (the English pack's tokenizer, random "
        "rows, MLM on those translations, seeds seed+1..seed+K), stored per seed.",
        "Dictionaries: " + "; ".join(f"{lang}: {label}" for lang, label in report["dictionaries"].items()) + ".",
        f"Machine: {report['environment']['cpu']}{_common.accelerator_clause(report['environment'])}"
        f", {report['jobs']} job(s) × {report['environment']['torch_threads']} "
        f"thread(s); load average {report['environment']['load_average_start']} at the start, "
        f"{report['load_average_end']} at the end; wall {report['wall_minutes']:.1f} min "
        f"(estimated {report['estimate']['wall_minutes']}).",
    ]
    notes += _common.run_notes(report["environment"])
    quick = " (quick smoke run: numbers are not meaningful)" if report["quick"] else ""
    title = "# Transfer-quality ablation" + quick
    return (
        title
        + "\n\n"
        + markdown_table(columns, lines)
        + "\n"
        + "\n".join(f"- {n}" for n in notes)
        + "\n\n"
        + "## Packs (first seed)\n\n"
        + packs_table(report)
    )


def packs_table(report: dict) -> str:
    """Rows set from English (of them from the dictionary) and steps trained, per language's pack."""

    def describe(info: dict | None) -> str:
        if not info:
            return "n/a"
        counts = info["init"]["counts"]
        dictionary = f", {counts['dictionary']:,} dictionary" if counts.get("dictionary") else ""
        return f"{info['init']['anchored_rows']:,} anchored{dictionary}; {info['steps']} steps"

    rows = []
    for row in report["rows"]:
        packs = row["seeds"][min(row["seeds"])]["packs"]
        rows.append([row["system"], *(describe(packs[lang]) for lang in [*LANGUAGES, SELF])])
    return markdown_table(["row", *LANGUAGES, "English re-learned (self-transfer)"], rows)


def plot(report: dict, path: Path) -> None:
    plt = _common.pyplot()
    rows = report["rows"]
    keys = [("english", "English"), ("self_transfer", "self-transfer"), *((lang, lang) for lang in LANGUAGES)]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) * len(keys) / 3 + 1.5))
    height = 0.8 / len(keys)
    for k, (key, label) in enumerate(keys):
        ys = [i + k * height for i in range(len(rows))]
        means = [row["summary"][key].get("mean") or 0.0 for row in rows]
        ax.barh(ys, means, height=height, label=label)
        for y, row in zip(ys, rows):
            values = row["summary"][key].get("values") or []
            ax.plot(
                [v for v in values if v is not None],
                [y] * len([v for v in values if v is not None]),
                "k.",
                markersize=3,
            )
    ax.axvline(report["majority"]["accuracy"], color="grey", linestyle="--", label="majority")
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(rows))])
    ax.set_yticklabels([row["system"] for row in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("genre accuracy (%), held-out books; dots: seeds")
    ax.set_title("Transfer-quality ablation" + (" (quick)" if report["quick"] else ""))
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def body_summary(grid: Grid, args) -> dict:
    provenance = grid.store.body.provenance
    return {
        "source": f"copied from {args.body_from}" if args.body_from else "pretrained by this benchmark",
        "minutes": provenance.get("minutes"),
        "steps": provenance.get("steps"),
        "tokens": provenance.get("tokens_seen"),
        "preset": provenance.get("preset"),
        "fingerprint": grid.store.body.short_fingerprint,
    }


def main() -> None:
    args = arguments()
    _common.setup(args)
    environment = _common.environment(args)
    budget = budget_for(args.quick, args.scale)
    grid = Grid(
        args.work, budget, body_from=args.body_from, genre_languages=LANGUAGES, jobs=args.jobs, threads=args.threads
    )
    variants = {row: [ROWS[row].with_seed(seed) for seed in args.seed_list] for row in args.row_ids}
    for row_variants in variants.values():
        for variant in row_variants:
            grid.require(variant, TASK, LANGUAGES, self_transfer=True)
    estimate = grid.estimate()
    print(
        f"budget: packs {budget.pack_steps} steps, tasks {budget.task_steps} steps, {budget.eval_examples} test "
        f"examples; work folder {grid.folder}"
    )
    print(
        f"estimate: about {estimate['wall_minutes']} min wall ({estimate['compute_minutes']} compute-minutes "
        f"over {args.jobs} job(s)); to build {estimate['to_build']}",
        flush=True,
    )
    started = time.perf_counter()
    grid.run()
    report = {
        "benchmark": NAME,
        "quick": args.quick,
        "environment": environment,
        "budget": budget.describe(),
        "body": body_summary(grid, args),
        "seeds": args.seed_list,
        "jobs": args.jobs,
        "estimate": estimate,
        "languages": list(LANGUAGES),
        "task": TASK,
        "majority": grid.majority(TASK),
        "n_test": len(grid.test_rows(TASK, "en")[0]),
        "test_books": list(_test_books()),
        "dictionaries": {lang: (dictionary_for(lang) or (None, "none available"))[1] for lang in LANGUAGES},
        "best_monolingual": BEST_MONOLINGUAL.system,
        "rows": [],
    }
    for row_id, row_variants in variants.items():
        per_seed = {v.seed: measure_row(grid, v) for v in row_variants}
        report["rows"].append(
            {
                "id": row_id,
                "system": ROWS[row_id].system,
                "variant": _variant_fields(ROWS[row_id]),
                "seeds": per_seed,
                "summary": summarise(per_seed),
            }
        )
    report["wall_minutes"] = (time.perf_counter() - started) / 60
    _common.write_report(args, NAME, report, render_markdown, plot)


def _variant_fields(variant: Variant) -> dict:
    from dataclasses import asdict

    return {k: v for k, v in asdict(variant).items() if k not in ("system", "seed")}


def _test_books() -> tuple[int, ...]:
    from embswap.data.bible import split_books

    return split_books("test")


if __name__ == "__main__":
    main()
