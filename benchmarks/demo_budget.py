"""Minutes vs zero-shot accuracy of `embswap demo`: the shortest budget that meets the bar (docs/results.md#budgets).

The demo runs at several fractions of its default step budgets (`embswap demo --budget F`: every
stage's steps and minutes cap times F, the recipe unchanged), each in its own folder, and the
table puts wall minutes beside each language's margin over the better control (majority class,
untrained pack), English in-language and clean self-transfer. The shortest budget that meets the
bar in every language (margin >= 10, self-transfer >= 80 % of English) is the one to default to.

    python benchmarks/demo_budget.py                               # budgets 0.35,0.5,0.7 (about 30 min, 2 cores)
    python benchmarks/demo_budget.py --budgets 0.5 --add 1.0=benchmarks/results/demo.json
    python benchmarks/demo_budget.py --quick                       # smoke run of the quick demo, about 2 min

`--add F=RESULTS.json` takes a saved demo result (e.g. the committed full-budget run) as the point F
instead of running it again; the table marks such points. Work folders live in --work and are reused
(a re-run with the same budgets only re-reads them). Writes benchmarks/results/demo_budget[.quick].{json,md,png}.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import _common
from _tables import markdown_table

from embswap.demo import DemoConfig, run_demo
from embswap.demo.bars import MARGIN_BAR, SELF_TRANSFER_BAR
from embswap.demo.recipe import MONOTRANS

NAME = "demo_budget"


def arguments():
    p = _common.parser(__doc__.split("\n\n")[0])
    p.set_defaults(threads=2)  # the demo's own setting on a 2-core machine
    p.add_argument(
        "--budgets",
        default=None,
        help="comma-separated fractions of the default budgets (default 0.35,0.5,0.7; quick: 0.5,1)",
    )
    p.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="F=RESULTS.json",
        help="a saved demo results.json as the point for budget F (repeatable)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=_common.REPO / "benchmarks" / "work" / "demo_budget",
        help="folder for the demo runs (reused)",
    )
    args = p.parse_args()
    args.fractions = [float(x) for x in (args.budgets or ("0.5,1" if args.quick else "0.35,0.5,0.7")).split(",")]
    args.saved = {}
    for item in args.add:
        fraction, _, path = item.partition("=")
        if not path or not Path(path).is_file():
            p.error(f"--add wants F=RESULTS.json with an existing file, got {item!r}")
        args.saved[float(fraction)] = Path(path)
    return args


def point(fraction: float, results: dict, source: str) -> dict:
    """The facts of one demo run that the curve needs."""
    languages = {
        row["language"]: {
            k: row[k] for k in ("accuracy", "untrained_pack", "majority", "margin_over_controls", "meets_bar")
        }
        for row in results["languages"]
    }
    ratio = results["self_transfer_ratio"]
    return {
        "budget": fraction,
        "source": source,
        "minutes": round(results["wall_seconds"] / 60, 2),
        "steps": {stage: info.get("steps") for stage, info in results.get("stages", {}).items()},
        "stopped_by_cap": sorted(
            s for s, info in results.get("stages", {}).items() if info.get("stopped_by") == "minutes"
        ),
        "english": results["english"]["accuracy"],
        "self_transfer": results["self_transfer"]["accuracy"],
        "self_transfer_ratio": ratio,
        "languages": languages,
        "meets_bar": all(v["meets_bar"] for v in languages.values()) and ratio >= SELF_TRANSFER_BAR,
        "threads": results.get("environment", {}).get("torch_threads"),
        "load_average_end": results.get("environment", {}).get("load_average_end"),
    }


def run_point(args, fraction: float) -> dict:
    base = DemoConfig.quick_config() if args.quick else DemoConfig()
    folder = args.work / f"{'quick-' if args.quick else ''}budget-{fraction:g}"
    print(f"demo at budget {fraction:g} in {folder}", flush=True)
    results = run_demo(folder, base.with_budget(fraction), log=lambda msg: print(f"  {msg}", flush=True))
    return point(fraction, results, f"run ({folder.name})")


def render_markdown(report: dict) -> str:
    points = report["points"]
    languages = list(points[0]["languages"]) if points else []
    columns = [
        "budget",
        "minutes",
        *(f"{lang} (margin)" for lang in languages),
        "English",
        "self-transfer",
        "bar met",
        "source",
    ]
    rows = []
    for p in points:
        cells = [
            f"{p['languages'][lang]['accuracy']:.1f} ({p['languages'][lang]['margin_over_controls']:+.1f})"
            for lang in languages
        ]
        rows.append(
            [
                f"{p['budget']:g}",
                f"{p['minutes']:.1f}",
                *cells,
                f"{p['english']:.1f}",
                f"{p['self_transfer']:.1f} ({100 * p['self_transfer_ratio']:.0f} %)",
                "yes" if p["meets_bar"] else "no",
                p["source"],
            ]
        )
    shortest = report["shortest_meeting_bar"]
    quick = " (quick smoke run: numbers are not meaningful)" if report["quick"] else ""
    notes = [
        "Zero-shot genre accuracy (%) on held-out books with the margin over the better control (majority "
        f"class, untrained pack) in brackets; the bar: every margin >= {MARGIN_BAR:g} and self-transfer >= "
        f"{100 * SELF_TRANSFER_BAR:.0f} % of English.",
        (
            f"Budget: fraction of the demo's default steps (pretraining {MONOTRANS.pretrain_steps:,}, packs "
            f"{MONOTRANS.transfer_steps}, fine-tuning {MONOTRANS.finetune_steps}) and minutes caps."
        ),
        "Shortest budget meeting the bar: "
        + (f"{shortest['budget']:g} ({shortest['minutes']:.1f} min)." if shortest else "none of those measured."),
        f"Machine: {report['environment']['cpu']}, {report['environment']['cores']} cores, "
        f"{report['environment']['torch_threads']} torch threads; load average {report['environment']['load_average_start']} "
        f"at the start; wall {report['wall_minutes']:.1f} min.",
    ]
    capped = [f"{p['budget']:g}: {', '.join(p['stopped_by_cap'])}" for p in points if p["stopped_by_cap"]]
    if capped:
        notes.append(
            "Stages stopped by their minutes cap (less learning than the budget intends): " + "; ".join(capped)
        )
    return (
        f"# Demo budget: minutes vs zero-shot accuracy{quick}\n\n"
        + markdown_table(columns, rows)
        + "\n"
        + "\n".join(f"- {n}" for n in notes)
        + "\n"
    )


def plot(report: dict, path: Path) -> None:
    plt = _common.pyplot()
    points = report["points"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    minutes = [p["minutes"] for p in points]
    for lang in points[0]["languages"] if points else []:
        ax.plot(minutes, [p["languages"][lang]["margin_over_controls"] for p in points], marker="o", label=lang)
    ax.axhline(MARGIN_BAR, color="grey", linestyle="--", linewidth=1, label=f"bar (+{MARGIN_BAR:g})")
    ax.set_xlabel("wall minutes")
    ax.set_ylabel("zero-shot margin over the better control (points)")
    ax.set_title("Margin per language")
    ax.legend(fontsize=8)
    bx.plot(minutes, [p["english"] for p in points], marker="o", label="English in-language")
    bx.plot(minutes, [p["self_transfer"] for p in points], marker="o", label="clean self-transfer")
    for lang in points[0]["languages"] if points else []:
        bx.plot(
            minutes,
            [p["languages"][lang]["accuracy"] for p in points],
            marker=".",
            alpha=0.6,
            label=f"{lang} zero-shot",
        )
    bx.set_xlabel("wall minutes")
    bx.set_ylabel("accuracy (%)")
    bx.set_title("Accuracy")
    bx.legend(fontsize=7)
    for axis in (ax, bx):
        axis.axvline(10, color="grey", linestyle=":", linewidth=1)  # the 10-minute goal (docs/results.md#budgets)
        for p in points:
            axis.annotate(f"{p['budget']:g}", (p["minutes"], axis.get_ylim()[0]), fontsize=7, ha="center", va="bottom")
    fig.suptitle(
        "embswap demo: budget fraction vs minutes and zero-shot accuracy" + (" (quick)" if report["quick"] else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = arguments()
    _common.setup(args)
    environment = _common.environment(args)
    started = time.perf_counter()
    points = []
    for fraction in sorted(set(args.fractions) | set(args.saved)):
        if fraction in args.saved:
            results = json.loads(args.saved[fraction].read_text(encoding="utf-8"))
            points.append(point(fraction, results, f"saved ({args.saved[fraction].name})"))
        else:
            points.append(run_point(args, fraction))
    meeting = [p for p in points if p["meets_bar"]]
    report = {
        "benchmark": NAME,
        "quick": args.quick,
        "environment": environment,
        "points": points,
        "shortest_meeting_bar": min(meeting, key=lambda p: p["minutes"]) if meeting else None,
        "wall_minutes": (time.perf_counter() - started) / 60,
    }
    _common.write_report(args, NAME, report, render_markdown, plot)


if __name__ == "__main__":
    main()
