"""Reading and writing artifact folders: atomic saves, safetensors, hashed and validated configs.

An artifact is a folder: ``config.json`` (kind, schema version, the fields of the artifact and
the SHA-256 of every file) plus safetensors and tokenizer files. Writers build the whole folder
beside the target and rename it into place, so an interrupted save leaves the old artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ._version import __version__
from .constants import CONFIG_NAME, IGNORED_FILES, SCHEMA_VERSION
from .errors import ArtifactNotFoundError, CorruptArtifactError, SchemaVersionError

_HASH_CHUNK = 1 << 22


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor without a copy when it is contiguous (bf16 included)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``target`` in one rename.

    The previous folder is moved aside first and deleted only after the new one is in place,
    so a crash at any point leaves either the old or the new artifact (plus ignorable
    ``.embswap-tmp-*`` siblings that the next save removes).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_siblings(target)
    tmp = target.parent / f".embswap-tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        old = None
        if target.exists():
            old = target.parent / f".embswap-old-{target.name}-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _clean_stale_siblings(target: Path) -> None:
    for prefix in (".embswap-tmp-", ".embswap-old-"):
        for stale in target.parent.glob(f"{prefix}{target.name}-*"):
            if prefix == ".embswap-old-" and not target.exists():
                # A crash between the two renames: the old artifact is still the valid one.
                os.rename(stale, target)
                continue
            shutil.rmtree(stale, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors with contiguous CPU tensors and the ``format: pt`` metadata transformers expects."""
    clean = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    save_file(clean, str(path), metadata={"format": "pt"})


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a truncated or corrupt file is a CorruptArtifactError."""
    if not path.is_file():
        raise CorruptArtifactError(f"{path} is missing; the artifact is incomplete: save or download it again")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CorruptArtifactError(
            f"{path} is not a readable safetensors file ({first}); the artifact is corrupt: save or download it again"
        ) from None


def write_config(folder: Path, kind: str, fields: dict) -> dict:
    """Write config.json recording kind, schema, version and the SHA-256 of every file present."""
    files = {
        str(p.relative_to(folder)): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != CONFIG_NAME
    }
    config = {
        "kind": kind,
        "schema_version": SCHEMA_VERSION,
        "embswap_version": __version__,
        "files": files,
        **fields,
    }
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return config


def read_config(folder: Path, kind: str, *, verify: bool = False) -> dict:
    """Read and validate an artifact's config.json: kind, schema version, listed files."""
    folder = Path(folder)
    if not folder.exists():
        raise ArtifactNotFoundError(f"{folder} does not exist; pass the folder of a saved {kind} (or a Hub id)")
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CorruptArtifactError(f"{folder} has no {CONFIG_NAME}; it is not an embswap {kind} folder")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptArtifactError(f"{path} is not valid JSON ({err.msg if hasattr(err, 'msg') else err})") from None
    if not isinstance(config, dict):
        raise CorruptArtifactError(f"{path} must hold a JSON object")
    found = config.get("kind")
    if found != kind:
        raise CorruptArtifactError(f"{folder} holds a {found!r} artifact, expected a {kind!r}; pass a {kind} folder")
    version = config.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise SchemaVersionError(f"{path} has schema_version {version!r}; expected an integer from 1 to {SCHEMA_VERSION}")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{folder} uses schema_version {version} (written by embswap {config.get('embswap_version', '?')}); "
            f"this embswap {__version__} reads up to {SCHEMA_VERSION}: upgrade embswap"
        )
    check_files(folder, config, verify=verify)
    return config


def check_files(folder: Path, config: dict, *, verify: bool) -> None:
    """The folder holds exactly the files its config lists (plus known extras); hashes if asked."""
    listed = config.get("files")
    if not isinstance(listed, dict):
        raise CorruptArtifactError(f"{folder / CONFIG_NAME} has no 'files' table; save the artifact again")
    present = {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and p.name != CONFIG_NAME and p.name not in IGNORED_FILES
    }
    missing = sorted(set(listed) - present)
    if missing:
        raise CorruptArtifactError(f"{folder} is missing {', '.join(missing)}; the artifact is incomplete: save or download it again")
    extra = sorted(present - set(listed))
    if extra:
        raise CorruptArtifactError(
            f"{folder} has files its config does not list: {', '.join(extra)}; remove them or save the artifact again"
        )
    if verify:
        for name, expected in listed.items():
            actual = file_sha256(folder / name)
            if actual != expected:
                raise CorruptArtifactError(
                    f"{folder / name} has SHA-256 {actual[:12]}…, its config records {expected[:12]}…; the file was changed or damaged"
                )


def require(config: dict, key: str, kind: type | tuple[type, ...], folder: Path):
    """A config field of the expected JSON type, or a CorruptArtifactError naming it."""
    if key not in config:
        raise CorruptArtifactError(f"{folder / CONFIG_NAME} lacks the field {key!r}; save the artifact again")
    value = config[key]
    if not isinstance(value, kind):
        raise CorruptArtifactError(f"{folder / CONFIG_NAME}: field {key!r} has type {type(value).__name__}")
    return value
