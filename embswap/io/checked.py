"""What this process (and, through a small per-user cache, earlier ones) has verified about files.

A file's SHA-256, that its floats are finite, a fingerprint computed from it: each is remembered
while the file stays unchanged, so loading it again does not redo the work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..safety import SHA256_HEX

_HASH_BUFFER = 1 << 20


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, streamed through one reused buffer (about 1 GB/s on one core)."""
    digest = hashlib.sha256()
    buffer = bytearray(_HASH_BUFFER)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while read := handle.readinto(buffer):
            digest.update(view[:read])
    return digest.hexdigest()


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor without a copy when it is contiguous (bf16 included)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


# Hashing and scanning a BERT-base body takes most of a second; a process that loads the same files
# again (a server composing language x task models on demand) should not pay that again. A file is
# known by its stamp: device, inode, size, modification and change time. A save replaces the file
# (a new inode) and any write changes the change time, which no user can set back, so an unchanged
# stamp means unchanged bytes. A file written less than _SETTLE_NS before it is read gets no stamp:
# on file systems with coarse timestamps a second write in the same tick would keep the stamp.

_SETTLE_NS = 2_000_000_000
_MAX_REMEMBERED = 4096


@dataclass
class CheckedFile:
    """What was verified about a file's bytes: its SHA-256, finiteness, values derived from it."""

    sha256: str | None = None
    finite: bool = False
    derived: dict = field(default_factory=dict)


_checked: OrderedDict[str, tuple[tuple, CheckedFile]] = OrderedDict()


def file_stamp(path: str | os.PathLike) -> tuple | None:
    """(device, inode, size, mtime, ctime) of the file ``path`` leads to.

    None when it cannot be read, or was written less than _SETTLE_NS ago: a later write could then
    leave the same stamp, so nothing may be remembered (or recalled) about its bytes.
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _SETTLE_NS:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def recall(path: str | os.PathLike, stamp: tuple | None) -> CheckedFile | None:
    """What this process (or an earlier one, see ``check_cache_dir``) verified about ``path`` at ``stamp``."""
    if stamp is None:
        return None
    key = os.path.realpath(path)
    entry = _checked.get(key)
    if entry is not None and entry[0] == stamp:
        return entry[1]
    checked = _read_cache_entry(key, stamp)
    if checked is not None:
        _keep(key, stamp, checked)
    return checked


def remember(
    path: str | os.PathLike,
    stamp: tuple | None,
    *,
    sha256: str | None = None,
    finite: bool = False,
    derived: dict | None = None,
) -> None:
    """Record facts verified about the bytes ``path`` had at ``stamp`` (taken before they were read).

    Nothing is recorded when the file changed meanwhile, or had no stamp (see ``file_stamp``).
    ``derived`` maps string keys to JSON values (it is kept on disk too).
    """
    if stamp is None or file_stamp(path) != stamp:
        return
    key = os.path.realpath(path)
    entry = _checked.get(key)  # _keep moves it to the most recent end
    checked = entry[1] if entry is not None and entry[0] == stamp else CheckedFile()
    checked.sha256 = sha256 or checked.sha256
    checked.finite = finite or checked.finite
    checked.derived.update(derived or {})
    _keep(key, stamp, checked)
    _write_cache_entry(key, stamp, checked)


def _keep(key: str, stamp: tuple, checked: CheckedFile) -> None:
    _checked.pop(key, None)
    _checked[key] = (stamp, checked)
    while len(_checked) > _MAX_REMEMBERED:
        _checked.popitem(last=False)


def forget_checked() -> None:
    """Forget what was verified, here and in the on-disk cache: the next load of every file hashes and scans it again."""
    _checked.clear()
    folder = check_cache_dir()
    if folder is not None and folder.is_dir():
        for entry in folder.glob("*.json"):
            with contextlib.suppress(OSError):
                entry.unlink()


# A fresh process (a CLI call, a worker starting) would otherwise hash and scan a BERT-base body
# again: most of its first compose, against a from_pretrained that reads lazily. So the facts are
# also kept on disk, one small JSON per file, keyed by the file's real path and valid only for the
# very same stamp (a rewrite changes the change time, which no user can set back). A missing,
# unreadable or foreign entry just means "not verified"; failing to write one costs only speed.


def check_cache_dir() -> Path | None:
    """The folder of the cross-process check cache, or None when ``EMBSWAP_CHECK_CACHE=off``.

    ``EMBSWAP_CHECK_CACHE`` may name the folder; the default is ``$XDG_CACHE_HOME/embswap/checked``
    (``~/.cache/embswap/checked``).
    """
    value = os.environ.get("EMBSWAP_CHECK_CACHE", "").strip()
    if value.lower() in ("0", "off", "false", "no", "none"):
        return None
    if value:
        return Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "embswap" / "checked"


def _cache_entry_path(key: str) -> Path | None:
    folder = check_cache_dir()
    return None if folder is None else folder / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.json"


def _read_cache_entry(key: str, stamp: tuple) -> CheckedFile | None:
    entry_path = _cache_entry_path(key)
    if entry_path is None:
        return None
    try:
        with open(entry_path, "rb") as handle:
            entry = json.loads(handle.read(1 << 20))
        if entry.get("path") != key or entry.get("stamp") != list(stamp):
            return None
        sha256, derived = entry.get("sha256"), entry.get("derived") or {}
        if (sha256 is not None and not (isinstance(sha256, str) and SHA256_HEX.fullmatch(sha256))) or not isinstance(
            derived, dict
        ):
            return None
        return CheckedFile(sha256=sha256, finite=entry.get("finite") is True, derived=dict(derived))
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _write_cache_entry(key: str, stamp: tuple, checked: CheckedFile) -> None:
    entry_path = _cache_entry_path(key)
    if entry_path is None:
        return
    entry = {
        "path": key,
        "stamp": list(stamp),
        "sha256": checked.sha256,
        "finite": checked.finite,
        "derived": checked.derived,
    }
    tmp = entry_path.with_name(f".{entry_path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        entry_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, entry_path)  # readers see the old entry or the new one, never half of one
    except (OSError, TypeError, ValueError):
        with contextlib.suppress(OSError):
            tmp.unlink()
