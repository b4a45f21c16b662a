"""`embswap demo`: the main job — an English-only model reads other languages through swapped embeddings.

Two recipes (embswap/demo/): ``encoder`` (the default; all-MiniLM-L6-v2 learns de/ru/zh/hi through
packs) and ``monotrans`` (the paper's route on a toy English BERT pretrained from scratch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.table import Table

from ._common import comma_list, err_console, out_console, print_json
from ._options import JsonResultsOption


def demo(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the store, report and plots.")] = Path(
        "embswap-demo"
    ),
    recipe: Annotated[
        str,
        typer.Option(
            "--recipe",
            help="encoder (default: all-MiniLM-L6-v2 learns new languages through packs) or monotrans (the paper's route on a toy BERT pretrained from scratch).",
        ),
    ] = "encoder",
    quick: Annotated[
        bool, typer.Option("--quick", help="A smoke run in about a minute (numbers are not meaningful).")
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Delete what an earlier run left in the folder and start over.")
    ] = False,
    lang: Annotated[
        Optional[str], typer.Option("--lang", help="Comma-separated languages (default de,ru,zh,hi).")
    ] = None,
    objective: Annotated[
        Optional[str], typer.Option(help="monotrans: step-2 objective, mlm (the paper) or mlm+align (default).")
    ] = None,
    robust_packs: Annotated[
        Optional[int],
        typer.Option(
            "--robust-packs",
            help="monotrans: re-learned English packs that swap-robust fine-tuning reads beside the English pack (default 1; 0 fine-tunes on the English pack alone, as the paper).",
        ),
    ] = None,
    budget: Annotated[
        float,
        typer.Option(
            "--budget",
            help="monotrans: fraction of the default step budgets (1.0: about 20 minutes on 2 cores, measured to meet the bar; see benchmarks/demo_budget.py).",
        ),
    ] = 1.0,
    as_json: JsonResultsOption = False,
) -> None:
    """Make an English model read other languages through new packs; test zero-shot on held-out books.

    Examples: embswap demo -o embswap-demo   (re-running reuses the store; --fresh starts over);
    embswap demo --recipe monotrans   (pretrain a toy English body, the paper's route, about 20 minutes)
    """
    import torch

    from embswap.demo import RECIPES

    if recipe not in RECIPES:
        raise typer.BadParameter(f"{recipe!r}; expected one of: {', '.join(RECIPES)}", param_hint="--recipe")
    from embswap.outputs import DEMO, check_output

    check_output(output, DEMO)  # before any download or training: missing, empty or an earlier demo folder
    torch.set_num_threads(max(1, torch.get_num_threads()))
    languages = tuple(comma_list(lang)) if lang else None
    from embswap.names import check_name

    for code in languages or ():
        check_name(code, "language code")  # before the English body is pretrained, not after
    if recipe == "encoder":
        given = [
            name
            for name, value in (
                ("--objective", objective),
                ("--robust-packs", robust_packs),
                ("--budget", None if budget == 1.0 else budget),
            )
            if value is not None
        ]
        if given:
            raise typer.BadParameter(f"{given[0]} applies to --recipe monotrans only", param_hint=given[0])
        _encoder(output, quick=quick, fresh=fresh, languages=languages, as_json=as_json)
        return

    from embswap.demo import DemoConfig, run_demo
    from embswap.report import self_transfer_line

    config = (
        DemoConfig.quick_config(languages or ("de", "ru"))
        if quick
        else DemoConfig(**({"languages": languages} if languages else {}))
    )
    if objective:
        config.objective = objective
    if robust_packs is not None:
        if robust_packs < 0:
            raise typer.BadParameter(
                f"--robust-packs is {robust_packs}; give 0 or more (0: no swap-robust fine-tuning)"
            )
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
        table.add_row(
            row["language"],
            f"{row['accuracy']:.1f}",
            f"{row['macro_f1']:.1f}",
            f"{row['untrained_pack']:.1f}",
            f"{row['majority']:.1f}",
            f"{row['margin_over_controls']:+.1f}",
            "met" if row["meets_bar"] else "NOT met",
        )
    out_console.print(table)
    out_console.print(self_transfer_line(results))
    out_console.print(
        f"English in-language {results['english']['accuracy']:.1f} %; clean self-transfer "
        f"{results['self_transfer']['accuracy']:.1f} % ({100 * results['self_transfer_ratio']:.0f} % of English); "
        f"{results['wall_seconds'] / 60:.1f} minutes."
    )
    out_console.print(f"report: {output / 'report'} (results.md, results.json, results.png, learning_curves.png)")


def _encoder(output: Path, *, quick: bool, fresh: bool, languages, as_json: bool) -> None:
    from embswap.demo import EncoderDemoConfig, run_encoder_demo
    from embswap.demo.encoder_report import targets

    if languages:
        from embswap.data.bible import LANGUAGES

        unknown = [code for code in languages if code == "en" or code not in LANGUAGES]
        if unknown:
            raise typer.BadParameter(
                f"{unknown[0]!r} is not a non-English language of the Bible data; expected some of "
                f"{', '.join(sorted(set(LANGUAGES) - {'en'}))}",
                param_hint="--lang",
            )
    config = (
        EncoderDemoConfig.quick_config(languages or ("de",))
        if quick
        else EncoderDemoConfig(**({"languages": languages} if languages else {}))
    )
    results = run_encoder_demo(output, config, fresh=fresh, log=lambda msg: err_console.print(f"[bold]>[/bold] {msg}"))
    if as_json:
        print_json(results)
        return
    table = Table(
        title=f"{results['model']} + new packs on held-out books: zero-shot genre, retrieval top-1 (%)",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    # short headers and no side borders: the table fits 80 columns (the Markdown report spells them out)
    for column in ("lang", "genre", "F1", "raw", "rand", "% en", "L2→en", "en→L2", "MRR", "raw→en", "bar g/r"):
        table.add_column(column, justify="right" if column != "lang" else "left", no_wrap=True)
    for row in results["languages"]:
        met = targets(row)
        g, r = row["genre"], row["retrieval"]
        table.add_row(
            row["language"],
            f"{g['accuracy']:.1f}",
            f"{g['macro_f1']:.1f}",
            f"{row['genre_raw_text']['accuracy']:.1f}",
            f"{row['genre_random_pack']['accuracy']:.1f}",
            f"{row['genre_of_english']:.0f}",
            f"{r['top1_l2_to_en']:.1f}",
            f"{r['top1_en_to_l2']:.1f}",
            f"{r['mrr_l2_to_en']:.1f}",
            f"{row['retrieval_raw_text']['top1_l2_to_en']:.1f}",
            "/".join("yes" if met[name] else "NO" for name in ("genre", "retrieval")),
        )
    out_console.print(table)
    english, ceiling = results["english"], results["ceiling_en_en"]
    out_console.print(
        f"English in-language genre {english['accuracy']:.1f} % (majority {results['majority']['accuracy']:.1f} %); "
        f"English↔English retrieval ceiling {ceiling['top1_l2_to_en']:.1f} / {ceiling['top1_en_to_l2']:.1f}; "
        f"{results['wall_seconds'] / 60:.1f} minutes."
    )
    out_console.print(f"report: {output / 'report'} (results.md, results.json, results.png); store: {output / 'store'}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
