"""`embswap push`, `pull`, `search` and `card`: sharing artifacts and stores on the Hugging Face Hub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from embswap.constants import CONFIG_NAME
from embswap.errors import ArtifactNotFoundError, DataError

from ._common import err_console, out_console, print_json
from ._options import HubTokenOption, JsonOption


def _results(path: Optional[Path]) -> Optional[dict]:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(
            f"{path}: cannot read evaluation results ({err}); pass the JSON `embswap evaluate --json` prints"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object of metrics (per language / task)")
    return data


def push(
    path: Annotated[Path, typer.Argument(help="An artifact folder (body, pack, task) or a store.")],
    repo: Annotated[str, typer.Option("--repo", help="Hub repo: user/name (also user/name@branch:subfolder).")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo as private.")] = False,
    revision: Annotated[Optional[str], typer.Option(help="Branch to push to (created if missing).")] = None,
    subfolder: Annotated[Optional[str], typer.Option(help="Folder in the repo, e.g. packs/de.")] = None,
    token: HubTokenOption = None,
    message: Annotated[Optional[str], typer.Option("--message", "-m", help="Commit message.")] = None,
    license: Annotated[Optional[str], typer.Option(help="License id for the model card, e.g. apache-2.0.")] = None,
    body_repo: Annotated[
        Optional[str], typer.Option(help="Where the body is published (for the card's compose command).")
    ] = None,
    base_model: Annotated[
        Optional[str], typer.Option(help="Card base_model (default: the body's repo when known).")
    ] = None,
    dataset: Annotated[
        Optional[list[str]], typer.Option(help="Hub dataset id the artifact was trained on (repeatable).")
    ] = None,
    results: Annotated[Optional[Path], typer.Option(help="JSON evaluation results to show in the card.")] = None,
    no_card: Annotated[
        bool, typer.Option("--no-card", help="Upload the folder's own README.md (if any) instead of a generated card.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Upload an artifact or a whole store as one commit, with a generated model card.

    Examples: embswap push store/packs/de --repo me/bert-en-packs --subfolder packs/de;
    embswap push store --repo me/bert-en-store --license apache-2.0
    """
    from embswap import hub

    if not path.exists():
        raise ArtifactNotFoundError(f"{path} does not exist; pass an artifact folder or a store")
    options = {
        "license": license,
        "base_model": base_model,
        "datasets": dataset or None,
        "eval_results": _results(results),
    }
    if body_repo:
        options["body_location"] = body_repo
    info = hub.push_folder(
        path,
        repo,
        private=private,
        revision=revision,
        subfolder=subfolder,
        token=token,
        commit_message=message,
        card=not no_card,
        **options,
    )
    if as_json:
        print_json(
            {"repo": repo, "revision": revision, "subfolder": subfolder, "commit": info.oid, "url": info.commit_url}
        )
        return
    err_console.print(f"pushed {path} to {hub.hub_location(repo, revision, subfolder)}")
    out_console.print(info.commit_url)


def pull(
    repo: Annotated[str, typer.Argument(help="Hub id: user/name[@revision][:subfolder].")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to write the artifact or store into.")],
    revision: Annotated[Optional[str], typer.Option(help="Branch, tag or commit.")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--overwrite", "--force", help="Replace an artifact or store of the kind pulled (never other files)."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Download an artifact or a store: weights, configs, tokenizers and cards only (no code, no pickles).

    Example: embswap pull me/bert-en-packs:packs/de -o packs/de
    """
    from embswap import hub

    folder = hub.pull(repo, output, revision, overwrite=force)
    artifacts = [str(p.relative_to(folder)) or "." for p in hub.artifact_folders(folder)]
    if as_json:
        print_json({"repo": repo, "output": str(folder), "artifacts": artifacts})
        return
    err_console.print(f"pulled {repo}: {len(artifacts)} artifact(s), hashes verified")
    out_console.print(str(folder))


def search(
    body: Annotated[
        str, typer.Option("--body", help="Body fingerprint (12+ hex digits) or a body / pack / store location.")
    ],
    lang: Annotated[Optional[str], typer.Option("--lang", help="Only packs for this language code.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many repos.")] = 100,
    token: HubTokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List Hub repos that publish packs or tasks for a body (by the card tag body-<fingerprint>).

    Example: embswap search --body me/bert-en-store --lang de
    """
    from embswap import hub

    rows = hub.search(body, lang, token=token, limit=limit)
    if as_json:
        print_json(rows)
        return
    if not rows:
        err_console.print("no repos found for this body" + (f" and language {lang!r}" if lang else ""))
        return
    table = Table(title=f"embswap artifacts for body {rows[0]['body']}")
    for column in ("repo", "kinds", "languages", "last modified", "downloads"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["repo"],
            ", ".join(row["kinds"]),
            ", ".join(row["languages"]),
            str(row["last_modified"] or ""),
            str(row["downloads"] if row["downloads"] is not None else ""),
        )
    out_console.print(table)


def card(
    path: Annotated[Path, typer.Argument(help="An artifact folder or a store.")],
    repo: Annotated[
        Optional[str], typer.Option("--repo", help="Where it will be published (used in the examples).")
    ] = None,
    body_repo: Annotated[Optional[str], typer.Option(help="Where the body is published.")] = None,
    license: Annotated[Optional[str], typer.Option(help="License id for the card.")] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Write README.md into the folder instead of printing it.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="With --write: replace a README.md the folder already has.")
    ] = False,
) -> None:
    """Print (or write) the model card `embswap push` would upload."""
    from embswap.cards import card_for
    from embswap.outputs import atomic_file, check_card

    if not path.exists():
        raise ArtifactNotFoundError(f"{path} does not exist; pass an artifact folder or a store")
    # Only into an artifact or a store, over an earlier README.md only with --overwrite: checked first.
    written = check_card(path, replace=overwrite, flag="--overwrite") if write else None
    options = {"location": repo, "license": license}
    if body_repo:
        options["body_location"] = body_repo
    model_card = card_for(path, **options)
    if written is not None:
        with atomic_file(written) as handle:  # a full disk leaves the previous card, not half a new one
            handle.write(str(model_card))
        kind = "artifact" if (path / CONFIG_NAME).is_file() else "store"
        err_console.print(f"wrote {written} ({kind} card); `embswap push --no-card` uploads it as is")
        return
    typer.echo(str(model_card), nl=False)


def register(app: typer.Typer) -> None:
    app.command("push")(push)
    app.command("pull")(pull)
    app.command("search")(search)
    app.command("card")(card)
