"""`embswap demo`: the main job — English-only model, other languages through swapped embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ._common import err_console, out_console, print_json


def demo(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the store, report and plots.")] = Path("embswap-demo"),
    quick: Annotated[bool, typer.Option("--quick", help="A smoke run in about a minute (numbers are not meaningful).")] = False,
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete what an earlier run left in the folder and start over.")] = False,
    lang: Annotated[Optional[str], typer.Option("--lang", help="Comma-separated languages (default de,ru,zh,hi).")] = None,
    objective: Annotated[Optional[str], typer.Option(help="Step-2 objective: mlm (the paper) or mlm+align (default).")] = None,
    robust_packs: Annotated[Optional[int], typer.Option("--robust-packs", help="Re-learned English packs that swap-robust fine-tuning reads beside the English pack (default 1; 0 fine-tunes on the English pack alone, as the paper).")] = None,
    budget: Annotated[float, typer.Option("--budget", help="Fraction of the default step budgets (1.0: about 20 minutes on 2 cores, measured to meet the bar; see benchmarks/demo_budget.py).")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
) -> None:
    """Pretrain an English body, learn packs for other languages, fine-tune on English, test zero-shot.

    Example: embswap demo -o embswap-demo   (re-running reuses the store; --fresh starts over)
    """
    import torch

    from embswap.demo import DemoConfig, run_demo
    from embswap.report import self_transfer_line

    torch.set_num_threads(max(1, torch.get_num_threads()))
    languages = tuple(x.strip() for x in lang.split(",") if x.strip()) if lang else None
    config = DemoConfig.quick_config(languages or ("de", "ru")) if quick else DemoConfig(**({"languages": languages} if languages else {}))
    if objective:
        config.objective = objective
    if robust_packs is not None:
        if robust_packs < 0:
            raise typer.BadParameter(f"--robust-packs is {robust_packs}; give 0 or more (0: no swap-robust fine-tuning)")
        config.robust_packs = robust_packs
    config = config.with_budget(budget)
    results = run_demo(output, config, fresh=fresh, log=lambda msg: err_console.print(f"[bold]>[/bold] {msg}"))
    if as_json:
        print_json(results)
        return
    table = Table(title="Zero-shot genre classification on held-out books (accuracy, %)")
    for column in ("language", "zero-shot", "macro-F1", "untrained pack", "majority", "margin", "bar"):
        table.add_column(column, justify="right" if column != "language" else "left")
    for row in results["languages"]:
        table.add_row(row["language"], f"{row['accuracy']:.1f}", f"{row['macro_f1']:.1f}", f"{row['untrained_pack']:.1f}",
                      f"{row['majority']:.1f}", f"{row['margin_over_controls']:+.1f}", "met" if row["meets_bar"] else "NOT met")
    out_console.print(table)
    out_console.print(self_transfer_line(results))
    out_console.print(
        f"English in-language {results['english']['accuracy']:.1f} %; clean self-transfer "
        f"{results['self_transfer']['accuracy']:.1f} % ({100 * results['self_transfer_ratio']:.0f} % of English); "
        f"{results['wall_seconds'] / 60:.1f} minutes."
    )
    out_console.print(f"report: {output / 'report'} (results.md, results.json, results.png, learning_curves.png)")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
