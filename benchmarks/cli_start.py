"""How long the CLI takes to answer: `embswap --help`, a few `embswap CMD --help` and `import embswap`.

Each measurement is a fresh process (what a user waits for after pressing enter), timed from the
parent. Rounds are interleaved (every case once per round, in a rotating order), so a busy moment
of a shared machine slows every case alike; a first round warms the file cache and is not counted.
`python -c "import typer"` is the floor any Typer CLI pays, and a two-command Typer app's
`hello --help` the floor of a command's help page; `from embswap import Body` shows what a
command that builds a model pays once it runs (torch, transformers), which `--help` no longer does.

    python benchmarks/cli_start.py              # 7 rounds, about three minutes on 2 cores
    python benchmarks/cli_start.py --quick      # 3 rounds

Writes benchmarks/results/cli_start[.quick].{json,md,png}.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import _common
from _tables import markdown_table

NAME = "cli_start"
GOAL_SECONDS = 1.0  # `embswap --help` and every `embswap CMD --help` on a quiet 2-core machine


def _embswap() -> list[str]:
    """The console script beside this interpreter (what a user runs), else the module."""
    script = Path(sys.executable).with_name("embswap")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "embswap.cli.main"]


# The floor of any Typer CLI's `CMD --help`: typer builds the command, its option types (pydantic) and a rich page.
MINIMAL_APP = """
import typer

app = typer.Typer()


@app.command()
def hello(name: str = typer.Option("x", help="A name."), count: int = typer.Option(1, help="How many.")) -> None:
    \"\"\"Say hello.\"\"\"


@app.command()
def bye(name: str = "x") -> None:
    \"\"\"Say bye.\"\"\"


app()
"""


def cases() -> list[dict]:
    cli = _embswap()
    python = [sys.executable, "-c"]
    return [
        {"case": "python -c 'import typer'", "argv": [*python, "import typer"], "kind": "baseline"},
        {
            "case": "two-command Typer app: hello --help",
            "argv": [*python, MINIMAL_APP, "hello", "--help"],
            "kind": "baseline",
        },
        {"case": "python -c 'import embswap'", "argv": [*python, "import embswap"], "kind": "import"},
        {"case": "embswap --help", "argv": [*cli, "--help"], "kind": "help"},
        {"case": "embswap transfer --help", "argv": [*cli, "transfer", "--help"], "kind": "help"},
        {"case": "embswap finetune --help", "argv": [*cli, "finetune", "--help"], "kind": "help"},
        {"case": "embswap data export --help", "argv": [*cli, "data", "export", "--help"], "kind": "help"},
        {"case": "embswap push --help", "argv": [*cli, "push", "--help"], "kind": "help"},
        {
            "case": "python -c 'from embswap import Body'",
            "argv": [*python, "from embswap import Body"],
            "kind": "reference",
        },
    ]


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=_common.REPO)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return elapsed


def measure(rounds: int) -> list[dict]:
    todo = cases()
    for case in todo:  # warm-up: the file cache, .pyc files
        time_once(case["argv"])
    seconds: list[list[float]] = [[] for _ in todo]
    for r in range(rounds):
        order = list(range(len(todo)))
        order = order[r % len(order) :] + order[: r % len(order)]
        for i in order:
            seconds[i].append(time_once(todo[i]["argv"]))
    baseline = _common.median(seconds[0])
    rows = []
    for case, values in zip(todo, seconds):
        median = _common.median(values)
        rows.append(
            {
                "case": case["case"],
                "kind": case["kind"],
                "command": " ".join(case["argv"]),
                "median_s": round(median, 4),
                "min_s": round(min(values), 4),
                "max_s": round(max(values), 4),
                "over_typer_s": round(median - baseline, 4),
                "seconds": [round(v, 4) for v in values],
            }
        )
    return rows


def render_markdown(report: dict) -> str:
    env = report["environment"]
    rows = [
        [r["case"], f"{r['median_s']:.2f}", f"{r['min_s']:.2f}", f"{r['max_s']:.2f}", f"{r['over_typer_s']:+.2f}"]
        for r in report["rows"]
    ]
    helps = [r for r in report["rows"] if r["kind"] == "help"]
    slowest = max(helps, key=lambda r: r["median_s"])
    quick = " (quick run)" if report["quick"] else ""
    notes = [
        f"Seconds of wall time per fresh process; {report['rounds']} interleaved rounds after one warm-up round; "
        "'over typer' is the median minus the median of `python -c 'import typer'`.",
        f"Slowest help page: `{slowest['case']}`, median {slowest['median_s']:.2f} s, min {slowest['min_s']:.2f} s; "
        f"the goal is <= {GOAL_SECONDS:g} s on a quiet 2-core machine (this run's median: "
        f"{'met' if slowest['median_s'] <= GOAL_SECONDS else 'not met'}).",
        "The two-command Typer app shows what Typer itself spends on a command's help page (building the "
        "command, its option types through pydantic, the rich page), which embswap cannot save.",
        "`from embswap import Body` loads torch and transformers: what a command pays once it builds a model, "
        "and what every `--help` paid before the CLI moved those imports into its commands.",
        f"embswap ran as {report['cli']}.",
        f"Machine: {env['cpu']}, {env['cores']} cores, Python {env['python']}; load average "
        f"{env['load_average_start']} at the start, {report['load_average_end']} at the end (a shared machine: "
        "the minimum is the figure least touched by other jobs).",
    ]
    return (
        f"# CLI start-up: seconds until the command answers{quick}\n\n"
        + markdown_table(["case", "median", "min", "max", "over typer"], rows)
        + "\n"
        + "\n".join(f"- {n}" for n in notes)
        + "\n"
    )


def plot(report: dict, path: Path) -> None:
    plt = _common.pyplot()
    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    names = [r["case"] for r in rows][::-1]
    ax.barh(names, [r["median_s"] for r in rows][::-1], color="tab:blue", label="median")
    ax.scatter([r["min_s"] for r in rows][::-1], names, color="black", marker="|", s=120, label="min", zorder=3)
    ax.axvline(GOAL_SECONDS, color="grey", linestyle="--", linewidth=1, label=f"goal {GOAL_SECONDS:g} s")
    ax.set_xlabel("seconds (fresh process)")
    ax.set_title("embswap CLI start-up" + (" (quick)" if report["quick"] else ""))
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=None, help="timed rounds (default 7; quick: 3)")
    args = p.parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    environment = _common.environment(args)
    started = time.perf_counter()
    rows = measure(rounds)
    report = {
        "benchmark": NAME,
        "quick": args.quick,
        "rounds": rounds,
        "environment": environment,
        "cli": "the console script" if len(_embswap()) == 1 else "python -m embswap.cli.main",
        "rows": rows,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "targets": [
            _common.target(f"{r['case']} (median)", r["median_s"], GOAL_SECONDS, higher_is_better=False, unit=" s")
            for r in rows
            if r["kind"] == "help"
        ],
    }
    _common.write_report(args, NAME, report, render_markdown, plot)
    _common.print_targets(report["targets"])


if __name__ == "__main__":
    main()
