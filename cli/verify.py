"""`embswap verify`: check an artifact or a whole store against the SHA-256 hashes its configs record."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embswap.errors import CorruptArtifactError

from ._common import err_console, human_bytes, out_console, print_json
from ._options import JsonOption


def verify(
    path: Annotated[
        str, typer.Argument(help="An artifact folder, a store, or a Hub id user/repo[@revision][:subfolder].")
    ],
    load: Annotated[
        bool, typer.Option("--load", help="Also load every artifact (tokenizer, NaN/Inf, shapes, fingerprint).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check every file of an artifact (or of every artifact in a store) against its recorded SHA-256.

    Exit code 0 when everything matches, 1 with a one-line reason on the first problem.
    Examples: embswap verify store; embswap verify store/packs/de --load --json
    """
    from embswap import hub
    from embswap.verify import verify as verify_files

    folder = Path(path) if Path(path).exists() else hub.resolve(path)
    rows = verify_files(folder, load=load)
    failed = [r for r in rows if r.failed]
    checked = [r for r in rows if r.status != "leftover"]
    if as_json:
        print_json(
            {
                "path": str(folder),
                "ok": not failed,
                "checked": len(checked),
                "failed": len(failed),
                "files": [r.as_dict() for r in rows],
            }
        )
    else:
        table = Table(title=f"verify {folder}")
        for column in ("artifact", "file", "size", "status", "detail"):
            table.add_column(column, justify="right" if column == "size" else "left")
        for r in rows:
            style = {"ok": "green", "leftover": "yellow"}.get(r.status, "red")
            size = human_bytes(r.bytes) if r.bytes is not None else ""
            table.add_row(r.artifact, r.file, size, f"[{style}]{r.status}[/{style}]", r.reason)
        out_console.print(table)
    if failed:
        first = failed[0]
        raise CorruptArtifactError(
            f"{len(failed)} of {len(checked)} checks failed; first: {first.artifact}/{first.file}: {first.reason}"
        )
    artifacts = len({r.artifact for r in checked})
    err_console.print(f"{len(checked)} checks on {artifacts} artifact(s): every file matches its recorded SHA-256")


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
