"""Checks on files that may come from a stranger, made before anything is allocated or run.

- safetensors: the 8-byte length and the JSON header are read and checked first (header size
  bounded, dtypes known, every shape x dtype size equal to its byte range, ranges contiguous and
  filling the file exactly, the data fits in this machine's memory, shapes as the config says), so
  a header that claims a 10^12-element tensor fails before a byte of it is allocated.
- Names in a config's ``files`` table stay inside the artifact folder: no ``..``, no absolute
  paths, no symlinks that lead out (the Hugging Face cache's links into its own blob store are the
  one exception: that is how every Hub download is laid out).
- Weights are finite: NaN or Inf is reported with the tensor's name.

Nothing here unpickles or imports code from an artifact; embswap never calls ``torch.load``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch

from .errors import CorruptArtifactError, EmbswapError

# safetensors' own limit; an embswap header (names, shapes, offsets) is a few KB.
MAX_HEADER_BYTES = 100_000_000
# config.json holds fields and a hash table: a few KB. Anything near this is not an embswap config.
MAX_CONFIG_BYTES = 32_000_000
# Elements checked for NaN/Inf at a time, so the check never doubles a large tensor's memory.
_FINITE_CHUNK = 1 << 22

DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as a safetensors header describes it (offsets relative to the data section)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def short_repr(value: object, limit: int = 60) -> str:
    """``repr`` cut to one short line, for messages that quote untrusted values."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown_name(name: str, limit: int = 100) -> str:
    """A file name as messages show it: control characters escaped, cut to ``limit``."""
    text = name if name.isprintable() else repr(name)[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unreadable(path: Path, reason: str) -> CorruptArtifactError:
    return CorruptArtifactError(
        f"{path} is not a readable safetensors file ({reason}); the artifact is corrupt: save or download it again"
    )


def read_safetensors_header(path: Path) -> dict[str, TensorEntry]:
    """The tensors a safetensors file holds, validated against the file's size; reads only the header."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < 8:
                raise _unreadable(path, f"{size} bytes, shorter than the 8-byte header length")
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len > MAX_HEADER_BYTES:
                raise _unreadable(path, f"header claims {header_len} bytes, more than the {MAX_HEADER_BYTES} allowed")
            if 8 + header_len > size:
                raise _unreadable(path, f"header claims {header_len} bytes but only {size - 8} follow: truncated")
            raw = handle.read(header_len)
    except OSError as err:
        raise _unreadable(path, err.strerror or type(err).__name__) from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _unreadable(path, "header is not JSON") from None
    if not isinstance(header, dict):
        raise _unreadable(path, "header is not a JSON object")
    entries = {}
    for name, spec in header.items():
        if name == "__metadata__":
            if not isinstance(spec, dict) or not all(isinstance(v, str) for v in spec.values()):
                raise _unreadable(path, "__metadata__ must map strings to strings")
            continue
        entries[name] = _entry(path, name, spec)
    _check_layout(path, entries, size - 8 - header_len)
    return entries


def _entry(path: Path, name: str, spec: object) -> TensorEntry:
    if not isinstance(spec, dict):
        raise _unreadable(path, f"entry {short_repr(name)} is not an object")
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise _unreadable(path, f"tensor {short_repr(name)} has unknown dtype {short_repr(dtype)}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _unreadable(path, f"tensor {short_repr(name)} has shape {short_repr(shape)}, not a list of sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):  # fmt: skip
        raise _unreadable(path, f"tensor {short_repr(name)} has data_offsets {short_repr(offsets)}")
    nbytes = math.prod(shape) * DTYPE_SIZES[dtype]  # Python ints: a huge claim cannot overflow
    if nbytes != offsets[1] - offsets[0]:
        raise _unreadable(
            path, f"tensor {short_repr(name)} of shape {short_repr(shape)} needs {nbytes} bytes, its range holds {offsets[1] - offsets[0]}"
        )
    return TensorEntry(name, dtype, tuple(shape), offsets[0], offsets[1])


def _check_layout(path: Path, entries: dict[str, TensorEntry], data_len: int) -> None:
    """Byte ranges follow each other with no gap or overlap and end exactly at the end of the file."""
    position = 0
    for entry in sorted(entries.values(), key=lambda e: (e.start, e.end)):
        if entry.start != position:
            raise _unreadable(path, f"tensor {short_repr(entry.name)} starts at byte {entry.start}, expected {position}")
        position = entry.end
    if position != data_len:
        raise _unreadable(path, f"tensors fill {position} bytes but the data section has {data_len}: truncated or padded")
    memory = _physical_memory()
    if memory and data_len > memory:
        raise EmbswapError(
            f"{path} holds {data_len / 1e9:.1f} GB of tensors, more than this machine's {memory / 1e9:.1f} GB of memory; "
            "load it on a larger machine"
        )


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_shapes(path: Path, entries: Mapping[str, TensorEntry], expected: Mapping[str, tuple[int | None, ...]]) -> None:
    """Each named tensor is present with the shape the config implies (``None`` = any size)."""
    for name, shape in expected.items():
        entry = entries.get(name)
        if entry is None:
            raise CorruptArtifactError(f"{path} has no tensor {name!r}; the artifact is incomplete: save it again")
        if len(entry.shape) != len(shape) or any(want is not None and want != got for want, got in zip(shape, entry.shape)):
            wanted = "(" + ", ".join("any" if d is None else str(d) for d in shape) + ")"
            raise CorruptArtifactError(
                f"{path}: tensor {name!r} has shape {entry.shape}, its config.json implies {wanted}; "
                "the weights and the config do not belong together: save the artifact again"
            )


def check_finite(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Every floating-point tensor is free of NaN and Inf, checked in chunks."""
    for name, tensor in tensors.items():
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        flat = tensor.reshape(-1)
        for start in range(0, flat.numel(), _FINITE_CHUNK):
            chunk = flat[start : start + _FINITE_CHUNK]
            if chunk.element_size() == 1:  # float8 has no isfinite kernel
                chunk = chunk.float()
            finite = torch.isfinite(chunk)
            if not bool(finite.all()):
                index = start + int((~finite).nonzero()[0, 0])
                raise CorruptArtifactError(
                    f"{path}: tensor {name!r} holds NaN or Inf (first at flat index {index}); "
                    "the weights are damaged or their training diverged: save them again from a healthy run"
                )


def member_path(folder: Path, name: object) -> Path:
    """The path of a file a config lists, refusing names that leave the folder."""
    config = folder / "config.json"
    if not isinstance(name, str) or not name:
        raise CorruptArtifactError(f"{config} lists a file named {short_repr(name)}; expected a relative path")
    parts = name.split("/")
    if (
        not name.isprintable()
        or "\\" in name
        or PurePosixPath(name).is_absolute()
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise CorruptArtifactError(
            f"{config} lists the file {short_repr(name)}, which is not a plain relative path inside the artifact folder; "
            "do not use this artifact"
        )
    return folder.joinpath(*parts)


def allowed_roots(folder: Path) -> list[Path]:
    """Where the files of ``folder`` may really live: in it, or in the Hub cache's blob store for it."""
    roots = [folder.resolve()]
    # <cache>/models--user--repo/snapshots/<revision>/[subfolder/]: files link to <cache>/models--user--repo/blobs/
    absolute = folder.absolute()
    for parent in (absolute, *absolute.parents):
        if parent.parent.name == "snapshots":
            blobs = parent.parent.parent / "blobs"
            if blobs.is_dir():
                roots.append(blobs.resolve())
            break
    return roots


def check_inside(path: Path, roots: list[Path]) -> None:
    """``path`` (a file found in an artifact folder) does not lead out of it through a symlink."""
    real = path.resolve()
    if not any(real.is_relative_to(root) for root in roots):
        raise CorruptArtifactError(
            f"{path} links to {real}, outside the artifact folder; do not use this artifact (or copy the real file in)"
        )
