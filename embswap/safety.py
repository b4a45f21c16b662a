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

import numpy as np
import torch

from .errors import CorruptArtifactError, EmbswapError

# safetensors' own limit; an embswap header (names, shapes, offsets) is a few KB.
MAX_HEADER_BYTES = 100_000_000
# config.json holds fields and a hash table: a few KB and a dozen objects and lists. Anything near
# these bounds is not an embswap config; parsing it could take gigabytes (ten million `{}`).
MAX_CONFIG_BYTES = 4_000_000
MAX_CONFIG_CONTAINERS = 100_000
# tokenizer.json: all-MiniLM's is 0.5 MB with 41 objects and lists, a 250k-piece XLM-R one 17 MB
# with 250k (one list per piece).
MAX_TOKENIZER_BYTES = 64_000_000
MAX_TOKENIZER_CONTAINERS = 2_000_000
# Real JSON here nests 3 to 6 levels; Python's parser overflows its stack near 1000.
MAX_JSON_DEPTH = 64
# Tensors in one safetensors file (BERT-base's body has about 200); each is one object with two lists.
MAX_TENSORS = 100_000
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


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _json_shape(raw: bytes) -> tuple[int, int]:
    """(objects + lists, deepest nesting) of JSON text, counting brackets (strings included)."""
    containers = raw.count(b"{") + raw.count(b"[")
    if not containers:
        return 0, 0
    brackets = np.frombuffer(raw.translate(None, _NOT_BRACKETS), dtype=np.uint8)
    steps = np.where((brackets == ord("[")) | (brackets == ord("{")), 1, -1).astype(np.int32)
    return containers, int(np.cumsum(steps, dtype=np.int32).max())


def check_json_shape(
    raw: bytes, where: object, what: str, max_containers: int, max_depth: int = MAX_JSON_DEPTH
) -> None:
    """Refuse JSON text with too many objects and lists, or nested too deeply, before it is parsed.

    Parsing allocates per container (ten million ``{}`` take gigabytes in Python); counting
    brackets costs one pass in C. Brackets inside strings are counted too, so a file over a bound
    is counted again without its strings before it is refused.
    """
    containers, depth = _json_shape(raw)
    if containers > max_containers or depth > max_depth:
        containers, depth = _json_shape(_JSON_STRING.sub(b"", raw))
    if containers > max_containers:
        raise CorruptArtifactError(
            f"{where} holds {containers} JSON objects and lists, more than the {max_containers} {what} may have; "
            "it is not a real one: do not use this artifact"
        )
    if depth > max_depth:
        raise CorruptArtifactError(
            f"{where} is nested {depth} levels deep, more than the {max_depth} {what} may be; "
            "it is not a real one: do not use this artifact"
        )


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
    # {name: {"shape": [...], "data_offsets": [...]}}: three containers per tensor, three levels deep.
    check_json_shape(raw, path, "a safetensors header", 3 * MAX_TENSORS + 2, max_depth=3)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _unreadable(path, "header is not JSON") from None
    if not isinstance(header, dict):
        raise _unreadable(path, "header is not a JSON object")
    if len(header) > MAX_TENSORS + 1:
        raise _unreadable(path, f"header lists {len(header)} tensors, more than the {MAX_TENSORS} allowed")
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
            path,
            f"tensor {short_repr(name)} of shape {short_repr(shape)} needs {nbytes} bytes, its range holds {offsets[1] - offsets[0]}",
        )
    return TensorEntry(name, dtype, tuple(shape), offsets[0], offsets[1])


def _check_layout(path: Path, entries: dict[str, TensorEntry], data_len: int) -> None:
    """Byte ranges follow each other with no gap or overlap and end exactly at the end of the file."""
    position = 0
    for entry in sorted(entries.values(), key=lambda e: (e.start, e.end)):
        if entry.start != position:
            raise _unreadable(
                path, f"tensor {short_repr(entry.name)} starts at byte {entry.start}, expected {position}"
            )
        position = entry.end
    if position != data_len:
        raise _unreadable(
            path, f"tensors fill {position} bytes but the data section has {data_len}: truncated or padded"
        )
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


def check_shapes(
    path: Path, entries: Mapping[str, TensorEntry], expected: Mapping[str, tuple[int | None, ...]]
) -> None:
    """Each named tensor is present with the shape the config implies (``None`` = any size)."""
    for name, shape in expected.items():
        entry = entries.get(name)
        if entry is None:
            raise CorruptArtifactError(f"{path} has no tensor {name!r}; the artifact is incomplete: save it again")
        if len(entry.shape) != len(shape) or any(
            want is not None and want != got for want, got in zip(shape, entry.shape)
        ):
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


# --- floats that a cast would turn into Inf ----------------------------------------------------------


def first_unrepresentable(
    tensors: Mapping[str, torch.Tensor | None], dtype: torch.dtype
) -> tuple[str, int, float] | None:
    """(name, flat index, value) of the first float that becomes Inf when cast to ``dtype``, or None
    (absent tensors, None, are skipped).

    A finite float64 near 1e306 passes the NaN/Inf check but is Inf in float32; only tensors whose
    dtype reaches beyond ``dtype``'s range are scanned (in chunks), so the usual float32, bfloat16
    and float16 tensors cost nothing on the way to float32.
    """
    if not dtype.is_floating_point:
        return None
    limit = torch.finfo(dtype).max
    for name, tensor in tensors.items():
        if tensor is None or not tensor.is_floating_point() or torch.finfo(tensor.dtype).max <= limit:
            continue
        flat = tensor.reshape(-1)
        for start in range(0, flat.numel(), _FINITE_CHUNK):
            chunk = flat[start : start + _FINITE_CHUNK]
            bad = torch.isfinite(chunk) & ~torch.isfinite(chunk.to(dtype))
            if bool(bad.any()):
                index = start + int(bad.nonzero()[0, 0])
                return name, index, float(flat[index])
    return None


def check_representable(
    tensors: Mapping[str, torch.Tensor | None],
    dtype: torch.dtype,
    *,
    owner: str,
    advice: str,
    error: type[EmbswapError] = CorruptArtifactError,
    precision: str | None = None,
) -> None:
    """Raise ``error`` at the first float of ``tensors`` that is Inf in ``dtype`` (see ``first_unrepresentable``):
    "<owner>: tensor 'x' holds 1e+39 (flat index 3), which is Inf in <precision>; <advice>", where
    ``precision`` defaults to the dtype's name."""
    overflow = first_unrepresentable(tensors, dtype)
    if overflow is not None:
        name, index, value = overflow
        raise error(
            f"{owner}: tensor {name!r} holds {value:.3g} (flat index {index}), which is Inf in "
            f"{precision or dtype_name(dtype)}; {advice}"
        )


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# --- tokenizer settings that name files ------------------------------------------------------------
# transformers' from_pretrained opens whatever file a tokenizer_config.json names (tokenizer_file,
# vocab_file, merges_file, ...), wherever it lies. embswap builds a tokenizer from the artifact's own
# tokenizer.json and passes on only the settings below, which name no file; any setting that looks like
# a file reference is refused, whatever its key, so damage or an attempt to read outside shows.

# Settings files of a tokenizer folder, read in this order (later ones win, as in transformers).
TOKENIZER_SETTINGS_FILES = ("special_tokens_map.json", "tokenizer_config.json")
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# Settings whose values are token strings ("</s>" is not a path): never read as file references.
_TOKEN_VALUED = frozenset(
    {*SPECIAL_TOKEN_KEYS, "additional_special_tokens", "extra_special_tokens", "added_tokens_decoder"}
)
_FILE_KEY = re.compile(r"(file|files|filename|path|paths|dir|dirs|directory|folder)$", re.IGNORECASE)
_FILE_SUFFIX = re.compile(
    r"\.(json|txt|model|vocab|bpe|spm|merges|tiktoken|gguf|bin|jinja|py|safetensors|pkl|pt)$", re.IGNORECASE
)
_MAX_SETTING_NODES = 100_000


def looks_like_file(value: object) -> bool:
    """A string that reads as a path or file name: absolute, with separators and no spaces, dots-only, or a file suffix."""
    if not isinstance(value, str) or not value:
        return False
    if value.startswith(("/", "\\", "~", "file:")) or re.match(r"[A-Za-z]:[\\/]", value) or value.strip(".") == "":
        return True
    plain = not any(c.isspace() for c in value)
    return plain and ("/" in value or "\\" in value or _FILE_SUFFIX.search(value) is not None)


def _empty(value: object) -> bool:
    return value is None or value is False or value in ("", [], {})


def file_settings(path: Path, config: Mapping) -> list[tuple[str, object]]:
    """(dotted key, value) of every setting in a tokenizer config that names a file (at any depth)."""
    found, stack, seen = [], [("", config)], 0
    while stack:
        prefix, node = stack.pop()
        seen += 1
        if seen > _MAX_SETTING_NODES:
            raise CorruptArtifactError(
                f"{path} holds more than {_MAX_SETTING_NODES} settings; the tokenizer is damaged"
            )
        items = node.items() if isinstance(node, Mapping) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            name = f"{prefix}.{key}" if prefix else str(key)
            if not prefix and key in _TOKEN_VALUED:
                continue
            if isinstance(key, str) and _FILE_KEY.search(key) and not _empty(value):
                found.append((name, value))
            elif isinstance(value, (Mapping, list)):
                stack.append((name, value))
            elif looks_like_file(value):
                found.append((name, value))
    return sorted(found, key=lambda item: item[0])


def _token_text(path: Path, key: str, value: object) -> str | None:
    """A special token as a plain string: its flags (lstrip, ...) live in tokenizer.json's added tokens."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    raise CorruptArtifactError(
        f"{path}: {key} is {short_repr(value)}, expected a token string; the tokenizer is damaged"
    )


def tokenizer_settings(path: Path, config: object) -> dict:
    """The settings of a ``tokenizer_config.json`` / ``special_tokens_map.json`` that a tokenizer built
    from tokenizer.json may take: special tokens, lengths, sides, input names. Everything else is left
    out (it only matters to transformers' file-reading loaders); a setting that names a file is refused.
    """
    if not isinstance(config, Mapping):
        raise CorruptArtifactError(f"{path} must hold a JSON object; the tokenizer is damaged")
    files = file_settings(path, config)
    if files:
        key, value = files[0]
        raise CorruptArtifactError(
            f"{path}: setting {shown_name(key, 60)!r} names a file ({short_repr(value, 200)}); embswap reads a tokenizer only from "
            "its own tokenizer.json and opens no other file: do not use this tokenizer (or save it again without the setting)"
        )
    settings: dict = {}
    for key in SPECIAL_TOKEN_KEYS:
        if key in config:
            settings[key] = _token_text(path, key, config[key])
    extra = config.get("additional_special_tokens")
    if extra is not None:
        if not isinstance(extra, list):
            raise CorruptArtifactError(
                f"{path}: additional_special_tokens is {short_repr(extra)}, expected a list of tokens"
            )
        settings["additional_special_tokens"] = [_token_text(path, "additional_special_tokens", t) for t in extra]
    checks = {
        "model_max_length": lambda v: type(v) is int and v > 0,
        "padding_side": lambda v: v in ("left", "right"),
        "truncation_side": lambda v: v in ("left", "right"),
        "model_input_names": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "clean_up_tokenization_spaces": lambda v: isinstance(v, bool),
        "split_special_tokens": lambda v: isinstance(v, bool),
        "add_prefix_space": lambda v: isinstance(v, bool),
    }
    for key, valid in checks.items():
        if key in config and config[key] is not None:
            if not valid(config[key]):
                raise CorruptArtifactError(
                    f"{path}: {key} is {short_repr(config[key])}, which no tokenizer takes; the tokenizer is damaged"
                )
            settings[key] = config[key]
    return settings


def max_token_id(tokenizer) -> tuple[int, str]:
    """(largest id, what produces it) over everything a fast tokenizer can emit: its vocabulary with
    added and special tokens, the ids its post-processor inserts ([CLS]/[SEP] templates) and its padding id.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer emits its vocabulary, added tokens included, and nothing else
        token, top = max(tokenizer.get_vocab().items(), key=lambda item: item[1], default=("", -1))
        specials = [i for i in tokenizer.all_special_ids if i is not None]
        return max((top, f"token {short_repr(token, 40)}"), (max(specials, default=-1), "a special token"))
    cached = tokenizer.__dict__.get("_embswap_vocab_max")
    if cached is None or cached[0] is not backend:  # the vocabulary is read once per backend (0.2 s for 250k tokens)
        vocab = backend.get_vocab(with_added_tokens=False)
        top = max(vocab.items(), key=lambda item: item[1], default=("", -1))
        cached = tokenizer.__dict__["_embswap_vocab_max"] = (backend, top[1], f"token {short_repr(top[0], 40)}")
    best = (cached[1], cached[2])
    for token_id, token in backend.get_added_tokens_decoder().items():
        best = max(best, (token_id, f"added token {short_repr(str(token), 40)}"))
    for token_id in tokenizer.all_special_ids:
        if token_id is not None:
            best = max(best, (token_id, "a special token"))
    if backend.post_processor is not None:
        for token_id in _inserted_ids(json.loads(backend.post_processor.__getstate__())):
            best = max(best, (token_id, "a special token its post-processor inserts"))
    padding = backend.padding
    if padding is not None and isinstance(padding.get("pad_id"), int):
        best = max(best, (padding["pad_id"], "its padding id"))
    return best


def _inserted_ids(node: object) -> list[int]:
    """Ids a serialised post-processor inserts: ``"ids": [..]`` lists (templates) and ``[token, id]`` pairs."""
    ids, stack = [], [node]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "ids" and isinstance(value, list):
                    ids += [v for v in value if type(v) is int]
                else:
                    stack.append(value)
        elif isinstance(node, list):
            if len(node) == 2 and isinstance(node[0], str) and type(node[1]) is int:
                ids.append(node[1])
            else:
                stack.extend(node)
    return ids
