"""`embswap split`, `compose` and `inspect`: making, assembling and looking at artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from embswap.constants import CONFIG_NAME, STORE_BODY, STORE_PACKS
from embswap.errors import CorruptArtifactError, EmbswapError

from ._common import err_console, human_bytes, out_console, print_json
from ._options import BodyOption, JsonOption, PackOption


def split(
    model: Annotated[str, typer.Argument(help="A masked-LM checkpoint: local folder or Hub id.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Store folder to write body/ and packs/<lang>/ into.")],
    lang: Annotated[str, typer.Option("--lang", help="Language code of the model's vocabulary.")] = "en",
    revision: Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit).")] = None,
    headless: Annotated[bool, typer.Option("--headless", help="Accept an encoder without an MLM head.")] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace the store's body and pack (its other packs and tasks stop composing)."
        ),
    ] = False,
) -> None:
    """Split a masked-LM checkpoint into a frozen body and its first language pack.

    Example: embswap split ./bert-en -o store --lang en
    """
    from embswap import Store
    from embswap.names import check_name
    from embswap.outputs import STORE, check_output
    from embswap.split import split as split_checkpoint
    from embswap.tasks.sentence import read_pooling, sentence_task

    check_name(lang, "language code")  # --lang names the pack's folder
    store = Store(check_output(output, STORE, inputs=[model]))
    sentence = store.task_path("sentence-embedding")
    for path, kind in ((store.body_path, "body"), (store.pack_path(lang), "language_pack"), (sentence, "task_module")):
        check_output(path, kind, replace=overwrite, flag="--overwrite")  # all before anything is written
    body, pack = split_checkpoint(model, lang, revision=revision, allow_headless=headless)
    store.save_body(body)
    store.save_pack(pack)
    written = f"body {body.short_fingerprint} and pack {lang!r}"
    if body.head == "none" and Path(model).is_dir():
        # A head-less encoder's task is its pooling (sentence-transformers folders say which).
        store.save_task("sentence-embedding", sentence_task(body, read_pooling(model), source=model))
        written += " and task 'sentence-embedding'"
    err_console.print(f"{written} written to {output}")


def compose(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the Hugging Face model.")],
    body: BodyOption = None,
    pack: PackOption = None,
    task: Annotated[Optional[str], typer.Option(help="Task module folder (or task name with --store).")] = None,
    store: Annotated[Optional[Path], typer.Option(help="A store; then use --lang and --task NAME.")] = None,
    lang: Annotated[Optional[str], typer.Option(help="Language of the pack to use from --store.")] = None,
) -> None:
    """Write a standard Hugging Face model folder for a language x task.

    Examples: embswap compose --store store --lang de --task genre -o de-genre;
    embswap compose --body store/body --pack store/packs/de -o de-mlm
    """
    from embswap import Store
    from embswap.compose import export as export_model
    from embswap.hub import resolve as resolve_location
    from embswap.names import check_name
    from embswap.outputs import MODEL, check_output

    check_output(output, MODEL, inputs=[store, body, pack, task])
    if task == "":  # neither a task name nor a folder (Path("") is the current one), not "no task"
        check_name(task, "task name")
    if store is not None:
        if lang is None:
            raise typer.BadParameter("--store needs --lang", param_hint="--lang")
        check_name(lang, "language code")  # a name inside the store, never a path out of it
        st = Store(resolve_location(store))  # a local store or user/repo[@revision][:subfolder]
        body_art, pack_art = st.body, st.pack(lang)
        task_art = (st.task(task) if task in st.task_names or not Path(task).exists() else task) if task else None
    else:
        if body is None or pack is None:
            raise typer.BadParameter("give --body and --pack, or --store and --lang", param_hint="--body/--pack")
        body_art, pack_art, task_art = body, pack, task
    export_model(body_art, pack_art, task_art, output)
    err_console.print(f"wrote {output}: load it with transformers' AutoModel*.from_pretrained({str(output)!r})")
    out_console.print(str(output))


_FIELDS = {
    "body": ("family", "fingerprint", "head", "embedding_dim"),
    "language_pack": ("language", "vocab_size", "hidden_size", "body_fingerprint", "position_embeddings"),
    "task_module": ("task", "labels", "mode", "body_fingerprint"),
}


def _describe(path: Path) -> dict:
    """What an artifact's config says, after the same validation every loader does."""
    from embswap.io import load_json, read_config
    from embswap.store import folder_bytes

    config = load_json(path / CONFIG_NAME)
    kind = config.get("kind") if isinstance(config, dict) else None
    if kind not in _FIELDS:
        raise CorruptArtifactError(f"{path / CONFIG_NAME} names no known artifact kind (found {kind!r})")
    config = read_config(path, kind)
    info = {"kind": kind, "path": str(path), "bytes": folder_bytes(path), "schema_version": config["schema_version"]}
    info.update({key: config.get(key) for key in _FIELDS[kind]})
    if kind == "language_pack":
        info["adapter"] = config.get("adapter_config") is not None
    info["provenance"] = config.get("provenance", {})
    return info


def _store_summary(path: Path) -> dict:
    from embswap import Store

    rows = Store(path).inventory()
    body = next((r for r in rows if r["kind"] == "body"), None)
    packs = [r for r in rows if r["kind"] == "language_pack"]
    tasks = [r for r in rows if r["kind"] == "task_module"]
    total = sum(r["bytes"] for r in rows)
    # What the same language x task models would cost as full, separate copies.
    full = 0
    if body is not None:
        per_model = body["bytes"] + (max(p["bytes"] for p in packs) if packs else 0)
        full = per_model * max(len(packs), 1) * max(len(tasks), 1)
    return {
        "kind": "store",
        "path": str(path),
        "fingerprint": body["config"]["fingerprint"] if body else None,
        "artifacts": [{k: r[k] for k in ("kind", "name", "bytes")} for r in rows],
        "bytes": total,
        "full_copies_bytes": full,
        "models": max(len(packs), 1) * max(len(tasks), 1) if body else 0,
    }


def _plain(text: str) -> Text:
    """Untrusted text (config values, folder names) as a terminal shows it: control and escape
    sequences escaped as ``--json`` escapes them, and no rich markup interpreted."""
    return Text(
        "".join(
            ch if ch.isprintable() else json.dumps(ch)[1:-1] if ord(ch) < 0x80 else f"\\u{ord(ch):04x}" for ch in text
        )
    )


def inspect(
    path: Annotated[Path, typer.Argument(help="An artifact folder or a store.")],
    as_json: JsonOption = False,
) -> None:
    """Show what an artifact or a store holds: kind, language, sizes, fingerprint, provenance."""
    from embswap.hub import resolve as resolve_location

    if not path.exists():
        path = resolve_location(str(path))  # a Hub id; a missing local path raises ArtifactNotFoundError
    if (path / CONFIG_NAME).is_file():
        info = _describe(path)
    elif (path / STORE_BODY).exists() or (path / STORE_PACKS).exists():
        info = _store_summary(path)
    else:
        raise EmbswapError(f"{path} is neither an embswap artifact (no {CONFIG_NAME}) nor a store (no body/ or packs/)")
    if as_json:
        print_json(info)
        return
    if info["kind"] != "store":
        table = Table(title=_plain(f"{info['kind']} {path}"), show_header=False)
        for key, value in info.items():
            table.add_row(key, _plain(json.dumps(value) if isinstance(value, (dict, list)) else str(value)))
        out_console.print(table)
        return
    table = Table(title=_plain(f"store {path} (body {str(info['fingerprint'])[:12]})"))
    table.add_column("kind")
    table.add_column("name")
    table.add_column("size", justify="right")
    for row in info["artifacts"]:
        table.add_row(row["kind"], _plain(row["name"]), human_bytes(row["bytes"]))
    out_console.print(table)
    out_console.print(
        f"total {human_bytes(info['bytes'])} for {info['models']} language x task models; "
        f"as full copies: {human_bytes(info['full_copies_bytes'])}"
    )
