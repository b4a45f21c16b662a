"""Validated reading of artifact folders: config.json, the files it lists, safetensors, bounded JSON.

Names in configs stay inside the folder, safetensors headers are checked before anything is
allocated, and hashes are checked streaming (each remembered while the file is unchanged, see
:mod:`embswap.io.checked`).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .._version import __version__
from ..constants import CONFIG_NAME, IGNORED_FILES, SCHEMA_VERSION
from ..errors import ArtifactNotFoundError, CorruptArtifactError, SchemaVersionError
from ..safety import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_CONTAINERS,
    MAX_TOKENIZER_BYTES,
    MAX_TOKENIZER_CONTAINERS,
    SHA256_HEX,
    allowed_roots,
    check_finite,
    check_inside,
    check_json_shape,
    check_shapes,
    member_path,
    read_safetensors_header,
    short_repr,
    shown_name,
)
from .checked import file_sha256, file_stamp, recall, remember


def load_tensors(
    path: Path,
    *,
    expected_shapes: Mapping[str, tuple[int | None, ...]] | None = None,
    check_finite_values: bool = False,
) -> dict[str, torch.Tensor]:
    """Load a safetensors file after checking its header against its size (and ``expected_shapes``).

    A truncated, inconsistent or bit-flipped file, a missing expected tensor, a wrong shape and,
    with ``check_finite_values``, a NaN or Inf is a CorruptArtifactError naming file and tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptArtifactError(f"{path} is missing; the artifact is incomplete: save or download it again")
    stamp = file_stamp(path)
    entries = read_safetensors_header(path)
    if expected_shapes:
        check_shapes(path, entries, expected_shapes)
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CorruptArtifactError(
            f"{path} is not a readable safetensors file ({first}); the artifact is corrupt: save or download it again"
        ) from None
    if check_finite_values and not _known_finite(path, stamp):
        if not _sums_are_finite(tensors):
            check_finite(path, tensors)  # names the first NaN or Inf, or finds that a sum merely overflowed
        remember(path, stamp, finite=True)
    return tensors


def _known_finite(path: Path, stamp: tuple | None) -> bool:
    known = recall(path, stamp)
    return known is not None and known.finite


def _sums_are_finite(tensors: Mapping[str, torch.Tensor]) -> bool:
    """True proves every float is finite: a NaN or Inf makes any sum that includes it NaN or Inf.

    One vectorised pass instead of an elementwise test (about 10x faster); False proves nothing
    (large values can overflow a sum), so the caller then runs the exact check.
    """
    for tensor in tensors.values():
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        if tensor.element_size() == 1 or not bool(torch.isfinite(tensor.sum())):  # float8: no sum kernel
            return False
    return True


def write_config(folder: Path, kind: str, fields: dict) -> dict:
    """Write config.json recording kind, schema, version and the SHA-256 of every file present."""
    files = {
        p.relative_to(folder).as_posix(): file_sha256(p)
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


def load_json(
    path: Path,
    *,
    max_bytes: int = MAX_CONFIG_BYTES,
    max_containers: int = MAX_CONFIG_CONTAINERS,
    what: str | None = None,
) -> object:
    """A JSON file bounded in bytes, objects and lists, and nesting (``safety.check_json_shape``),
    checked before it is parsed; unreadable, too large, too deep or invalid is a CorruptArtifactError.
    ``what`` names the file in messages ("a config.json" by default, from the file's name)."""
    path = Path(path)
    what = what or f"a {path.name}"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # opening a pipe would hang
            raise CorruptArtifactError(f"{path} is not a regular file; do not use this artifact")
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as err:
        raise CorruptArtifactError(f"{path} cannot be read ({err.strerror or type(err).__name__})") from None
    if len(raw) > max_bytes:
        raise CorruptArtifactError(
            f"{path} is too large: more than the {max_bytes} bytes {what} may have; it is not a real one: do not use this artifact"
        )
    check_json_shape(raw, path, what, max_containers)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CorruptArtifactError(f"{path} is not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as err:
        raise CorruptArtifactError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:  # brackets hidden in strings fooled the count; the parser ran out of stack
        raise CorruptArtifactError(f"{path} is nested too deeply to parse; do not use this artifact") from None
    except ValueError as err:  # an integer with more digits than Python converts
        first = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise CorruptArtifactError(f"{path} is not valid JSON ({first})") from None


def read_config(folder: Path, kind: str, *, verify: bool = False) -> dict:
    """Read and validate an artifact's config.json: kind, schema version, listed files (+ hashes)."""
    folder = Path(folder)
    if not folder.exists():
        raise ArtifactNotFoundError(f"{folder} does not exist; pass the folder of a saved {kind} (or a Hub id)")
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CorruptArtifactError(f"{folder} has no {CONFIG_NAME}; it is not an embswap {kind} folder")
    check_inside(path, allowed_roots(folder))
    config = load_json(path)
    if not isinstance(config, dict):
        raise CorruptArtifactError(f"{path} must hold a JSON object")
    found = config.get("kind")
    if found is None:
        raise CorruptArtifactError(_not_embswap(folder, config, kind))
    if found != kind:
        raise CorruptArtifactError(
            f"{folder} holds a {short_repr(found)} artifact, expected a {kind!r}; pass a {kind} folder"
        )
    version = config.get("schema_version")
    if type(version) is not int or version < 1:
        raise SchemaVersionError(
            f"{path} has schema_version {short_repr(version)}; expected an integer from 1 to {SCHEMA_VERSION}"
        )
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{folder} uses schema_version {version} (written by embswap {short_repr(config.get('embswap_version', '?'))}); "
            f"this embswap {__version__} reads up to {SCHEMA_VERSION}: upgrade embswap"
        )
    check_files(folder, config, verify=verify)
    return config


# How a Hugging Face model folder becomes each kind ``read_config`` reads.
_MADE_BY = {
    "body": "make a store of it with `embswap split {folder} --lang CODE -o STORE` and pass STORE/body",
    "language_pack": "make a store of it with `embswap split {folder} --lang CODE -o STORE` and pass STORE/packs/CODE",
    "task_module": "a task module is trained on a body with `embswap finetune` (STORE/tasks/NAME)",
}


def _not_embswap(folder: Path, config: dict, kind: str) -> str:
    """The message for a folder whose config.json embswap did not write: what the folder is, and what to do."""
    wanted = kind.replace("_", " ") if kind in _MADE_BY else "artifact"  # a caller that knows no kind passes "?"
    todo = f"pass the folder of a saved {wanted}" if kind in _MADE_BY else "pass an embswap artifact folder"
    model_type = config.get("model_type")
    if isinstance(model_type, str):
        return (
            f"{folder} is a Hugging Face model folder (model_type {short_repr(model_type)}), not an embswap {wanted}; "
            + _MADE_BY.get(kind, todo).format(folder=folder)
        )
    return f"{folder} is not an embswap artifact (its {CONFIG_NAME} has no 'kind'); {todo}"


def present_files(folder: Path) -> dict[str, Path]:
    """The files of an artifact folder that its config must list, by relative POSIX name.

    Every symlink must lead inside the folder (or into the Hub cache's blobs), and anything that
    is neither a file nor a folder (a pipe, socket, device, broken link) is refused: reading one
    could hang or leak.
    """
    roots = allowed_roots(folder)
    files = {}
    try:
        found = sorted(folder.rglob("*"))
    except OSError as err:  # a folder removed or unreadable while listed
        raise CorruptArtifactError(f"{folder} cannot be listed ({err.strerror or type(err).__name__})") from None
    for path in found:
        if path.is_symlink():
            check_inside(path, roots)
        if path.is_dir():
            continue
        if not path.is_file():
            raise CorruptArtifactError(
                f"{path} is not a regular file (a pipe, socket, device or broken link); do not use this artifact"
            )
        if path.name != CONFIG_NAME and path.name not in IGNORED_FILES:
            files[path.relative_to(folder).as_posix()] = path
    return files


def check_files(folder: Path, config: dict, *, verify: bool) -> None:
    """The folder holds exactly the files its config lists (plus known extras), all inside it; hashes if asked."""
    listed = config.get("files")
    if not isinstance(listed, dict):
        raise CorruptArtifactError(f"{folder / CONFIG_NAME} has no 'files' table; save the artifact again")
    for name, digest in listed.items():
        member_path(folder, name)
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise CorruptArtifactError(
                f"{folder / CONFIG_NAME}: the hash of {short_repr(name)} is {short_repr(digest)}, not a SHA-256 hex digest; "
                "save the artifact again"
            )
    present = present_files(folder)
    missing = sorted(set(listed) - set(present))
    if missing:
        raise CorruptArtifactError(
            f"{folder} is missing {', '.join(map(shown_name, missing[:5]))}; the artifact is incomplete: save or download it again"
        )
    extra = sorted(set(present) - set(listed))
    if extra:
        raise CorruptArtifactError(
            f"{folder} has files its config does not list: {', '.join(map(shown_name, extra[:5]))}; remove them or save the artifact again"
        )
    for name in listed:
        precheck_file(present[name], headers=verify)
    if verify:
        for name, expected in listed.items():
            stamp = file_stamp(present[name])
            known = recall(present[name], stamp)
            if known is not None and known.sha256 == expected:
                continue  # hashed by this process since its last change
            try:
                actual = file_sha256(present[name])
            except OSError as err:
                raise CorruptArtifactError(
                    f"{folder / name} cannot be read ({err.strerror}); check its permissions"
                ) from None
            if actual != expected:
                raise CorruptArtifactError(
                    f"{folder / name} has SHA-256 {actual[:12]}…, its config records {expected[:12]}…; "
                    "the file was changed or damaged: download or save it again"
                )
            remember(present[name], stamp, sha256=actual)


def precheck_file(path: Path, *, headers: bool = True) -> None:
    """The cheap bounds a listed file must meet before it is hashed or parsed.

    Every file but the safetensors weights is at most MAX_TOKENIZER_BYTES, and JSON files are bounded
    in objects, lists and nesting (``safety.check_json_shape``: read once, then remembered for the
    file's stamp); with ``headers``, a safetensors header is checked against the file's size, so a
    sparse file whose header claims terabytes fails here instead of after a long SHA-256 pass.
    """
    try:
        size = path.stat().st_size
    except OSError as err:
        raise CorruptArtifactError(f"{path} cannot be read ({err.strerror or type(err).__name__})") from None
    if path.name.endswith(".safetensors"):
        if headers:
            read_safetensors_header(path)
        return
    if size > MAX_TOKENIZER_BYTES:
        raise CorruptArtifactError(
            f"{path} is too large: {size} bytes, more than the {MAX_TOKENIZER_BYTES} a tokenizer or other non-weight file "
            "may have; do not use this artifact"
        )
    if path.suffix == ".json":
        stamp = file_stamp(path)
        known = recall(path, stamp)
        if known is not None and known.derived.get("json_bounded") is True:
            return
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise CorruptArtifactError(f"{path} cannot be read ({err.strerror or type(err).__name__})") from None
        check_json_shape(raw, path, f"a {path.name}", MAX_TOKENIZER_CONTAINERS)
        remember(path, stamp, derived={"json_bounded": True})


def require(config: dict, key: str, kind: type | tuple[type, ...], folder: Path):
    """A config field of the expected JSON type, or a CorruptArtifactError naming it."""
    if key not in config:
        raise CorruptArtifactError(f"{folder / CONFIG_NAME} lacks the field {key!r}; save the artifact again")
    value = config[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and int in kinds and bool not in kinds):
        raise CorruptArtifactError(f"{folder / CONFIG_NAME}: field {key!r} has type {type(value).__name__}")
    return value


def require_sha256(config: dict, key: str, folder: Path) -> str:
    """A config field holding a SHA-256 hex digest, or a CorruptArtifactError naming it."""
    value = require(config, key, str, folder)
    if not SHA256_HEX.fullmatch(value):
        raise CorruptArtifactError(
            f"{folder}/config.json: field {key!r} is not a SHA-256 hex digest; save the artifact again"
        )
    return value


def optional_dict(config: dict, key: str, folder: Path) -> dict | None:
    """A config field that is a JSON object or absent (None), or a CorruptArtifactError naming it."""
    value = config.get(key)
    if value is not None and not isinstance(value, dict):
        raise CorruptArtifactError(
            f"{folder}/config.json: field {key!r} has type {type(value).__name__}, expected an object"
        )
    return value
