"""Checking an artifact, or every artifact of a store, against the hashes its config records.

Each file is hashed streaming and compared with ``config.json``; safetensors headers are checked
against the file size (before hashing); with ``load=True`` every artifact is also loaded (tokenizer,
NaN/Inf, shapes, body fingerprint) and every pack and task module is checked against its store's body
as ``compose`` will use it (every tensor's shape against the body's config). Problems become rows, never exceptions, so one bad file does not hide
the others.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .constants import CONFIG_NAME, STORE_BODY, STORE_PACKS, STORE_TASKS, TOKENIZER_DIR
from .errors import ArtifactNotFoundError, EmbswapError
from .io import file_sha256, load_json, precheck_file, present_files, read_config
from .safety import TOKENIZER_SETTINGS_FILES, shown_name, tokenizer_settings

KINDS = ("body", "language_pack", "task_module")
# Leftovers of interrupted saves: readers ignore them and the next save of the path removes them.
_LEFTOVER = re.compile(r"\.embswap-(tmp|old)-.+-[0-9a-f]{8}")

OK, MISMATCH, ERROR, LEFTOVER = "ok", "mismatch", "error", "leftover"


@dataclass
class FileCheck:
    artifact: str
    kind: str
    file: str
    bytes: int | None
    status: str  # ok | mismatch | error | leftover (only the first three are about the artifact itself)
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.status in (MISMATCH, ERROR)

    def as_dict(self) -> dict:
        return asdict(self)


def artifact_folders(path: Path) -> tuple[list[Path], list[Path]]:
    """(artifact folders, leftovers of interrupted saves) under an artifact folder or a store."""
    if (path / CONFIG_NAME).is_file():
        return [path], []
    folders, leftovers = [], []
    if (path / STORE_BODY).exists():
        folders.append(path / STORE_BODY)
    for sub in (STORE_PACKS, STORE_TASKS):
        if not (path / sub).is_dir():
            continue
        for child in sorted((path / sub).iterdir()):
            if _LEFTOVER.fullmatch(child.name):
                leftovers.append(child)
            elif child.is_dir() and not child.name.startswith("."):
                folders.append(child)
    leftovers += [p for p in sorted(path.iterdir()) if _LEFTOVER.fullmatch(p.name)]
    return folders, leftovers


def verify_artifact(folder: Path, *, load: bool = False, loaded: dict | None = None) -> list[FileCheck]:
    """One row per file of ``folder``: its hash against the config, and whether it parses.

    With ``load``, what loaded is put in ``loaded`` (folder -> artifact) when one is given.
    """
    label = str(folder)
    try:
        config = load_json(folder / CONFIG_NAME) if (folder / CONFIG_NAME).is_file() else None
        kind = config.get("kind") if isinstance(config, dict) else None
        if kind not in KINDS:
            raise EmbswapError(f"{folder} is not an embswap artifact (no {CONFIG_NAME} naming a body, pack or task)")
        config = read_config(folder, kind)  # structure: kind, schema, listed files, paths inside
    except EmbswapError as err:
        return [FileCheck(label, "?", CONFIG_NAME, None, ERROR, _line(err))]
    present = present_files(folder)
    rows = []
    for name, expected in sorted(config["files"].items()):
        path = present[name]
        row = FileCheck(label, kind, name, path.stat().st_size, OK)
        try:
            precheck_file(
                path
            )  # the header against the file's size first: a sparse file claiming terabytes fails at once
            actual = file_sha256(path)
            if actual != expected:
                row.status, row.reason = MISMATCH, f"SHA-256 {actual[:12]}…, config records {expected[:12]}…"
            elif kind == "language_pack" and _is_tokenizer_settings(name):
                tokenizer_settings(path, load_json(path))  # a setting that names a file fails here, not only on load
        except EmbswapError as err:
            row.status, row.reason = ERROR, _line(err)
        except OSError as err:
            row.status, row.reason = ERROR, f"cannot read ({err.strerror})"
        rows.append(row)
    if load and not any(r.failed for r in rows):
        row, artifact = _load_row(folder, kind)
        rows.append(row)
        if loaded is not None and artifact is not None:
            loaded[folder] = artifact
    return rows


def _load_row(folder: Path, kind: str) -> tuple[FileCheck, object]:
    from .artifacts import Body, LanguagePack, TaskModule

    cls = {"body": Body, "language_pack": LanguagePack, "task_module": TaskModule}[kind]
    try:
        artifact = cls.from_pretrained(folder, verify=False)  # the hashes were just checked
    except EmbswapError as err:
        return FileCheck(str(folder), kind, "(load)", None, ERROR, _line(err)), None
    return FileCheck(str(folder), kind, "(load)", None, OK, "loads"), artifact


def _compose_rows(loaded: dict) -> list[FileCheck]:
    """What ``compose`` would meet: every pack and task against the body of their store, every tensor's
    shape against the body's config (on the meta device: nothing allocated). A pack or task verified
    alone inside a store (``<store>/packs/<lang>``) is checked against that store's body."""
    from .artifacts import Body, LanguagePack, check_compatible
    from .compose import check_composable

    bodies = {folder: a for folder, a in loaded.items() if isinstance(a, Body)}
    parts = {folder: a for folder, a in loaded.items() if not isinstance(a, Body)}
    if not parts:
        return []
    store = next(iter(parts)).parent.parent
    if store / STORE_BODY not in bodies:
        if not (store / STORE_BODY / CONFIG_NAME).is_file() or next(iter(parts)).parent.name not in (
            STORE_PACKS,
            STORE_TASKS,
        ):
            return []  # no body to check against
        try:
            bodies[store / STORE_BODY] = Body.from_pretrained(store / STORE_BODY)
        except EmbswapError as err:
            return [FileCheck(str(store / STORE_BODY), "body", "(load)", None, ERROR, _line(err))]
    body = bodies[store / STORE_BODY]
    packs = [a for a in parts.values() if isinstance(a, LanguagePack)]
    if not packs:  # a task verified alone: use the store's packs
        for child in sorted((store / STORE_PACKS).glob("*/")) if (store / STORE_PACKS).is_dir() else []:
            try:
                packs.append(LanguagePack.from_pretrained(child))
            except EmbswapError:
                continue  # reported when the pack itself is verified
    rows = []
    for folder, artifact in parts.items():
        kind = "language_pack" if isinstance(artifact, LanguagePack) else "task_module"
        try:
            check_compatible(body, artifact)
            if isinstance(artifact, LanguagePack):
                check_composable(body, artifact)
            elif packs:
                for pack in packs:
                    check_composable(body, pack, artifact)
            else:
                check_composable(body, None, artifact, vocab_size=1)
        except EmbswapError as err:
            rows.append(FileCheck(str(folder), kind, "(compose)", None, ERROR, _line(err)))
            continue
        rows.append(FileCheck(str(folder), kind, "(compose)", None, OK, "fits the body"))
    return rows


def verify(path: str | os.PathLike, *, load: bool = False) -> list[FileCheck]:
    """Rows for every file of an artifact, or of every artifact of a store, plus save leftovers."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactNotFoundError(f"{path} is not a folder; pass an artifact folder or a store")
    folders, leftovers = artifact_folders(path)
    if not folders:
        raise EmbswapError(
            f"{path} is neither an embswap artifact (no {CONFIG_NAME}) nor a store (no body/, packs/ or tasks/)"
        )
    loaded: dict = {}
    rows = [row for folder in folders for row in verify_artifact(folder, load=load, loaded=loaded)]
    if load:
        rows += _compose_rows(loaded)
    for leftover in leftovers:
        rows.append(
            FileCheck(str(leftover), "-", "-", None, LEFTOVER, "an interrupted save; ignored, removed by the next save")
        )
    return rows


def _is_tokenizer_settings(name: str) -> bool:
    return name in {f"{TOKENIZER_DIR}/{settings}" for settings in TOKENIZER_SETTINGS_FILES}


def _line(err: Exception) -> str:
    text = str(err)
    return shown_name(text.splitlines()[0] if text else type(err).__name__, 400)
