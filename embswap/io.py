"""Reading and writing artifact folders: atomic, locked saves; validated safetensors and configs.

An artifact is a folder: ``config.json`` (kind, schema version, the fields of the artifact and
the SHA-256 of every file) plus safetensors and tokenizer files.

Saving: the whole folder is built beside the target (``.embswap-tmp-<name>-*``), flushed to disk,
and swapped in with one ``renameat2(RENAME_EXCHANGE)`` on Linux, so the path always names a whole
artifact, the old or the new one; elsewhere two renames with a recovery step. A lock
(``flock`` on ``.embswap-lock-<name>``) serialises writers of one path; a second writer waits.
Reading: names in configs stay inside the folder, safetensors headers are checked before anything
is allocated, hashes are checked streaming, and a read that overlapped a swap is repeated. What a
process has checked about a file (its SHA-256, that its floats are finite, a fingerprint computed
from it) is remembered while the file stays unchanged, so loading it again does not redo the work,
in this process and (through a small per-user cache, ``EMBSWAP_CHECK_CACHE``) in later ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ._version import __version__
from .constants import CONFIG_NAME, IGNORED_FILES, SCHEMA_VERSION
from .errors import (
    ArtifactBusyError,
    ArtifactNotFoundError,
    ArtifactWriteError,
    CorruptArtifactError,
    EmbswapError,
    SchemaVersionError,
)
from .outputs import check_replace
from .safety import (
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

try:
    import fcntl
except ImportError:  # Windows: saves stay atomic, but concurrent writers of one path are not serialised
    fcntl = None

T = TypeVar("T")

_HASH_BUFFER = 1 << 20
LOCK_TIMEOUT_ENV = "EMBSWAP_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 300.0

# Tests set these: a callable run at each step of a save (crash injection), and whether to use
# RENAME_EXCHANGE (False exercises the two-rename fallback other systems get).
_fault_hook: Callable[[str], None] | None = None
_use_rename_exchange = sys.platform.startswith("linux")


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


# --- what this process has already checked ---------------------------------------------------
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


def remember(path: str | os.PathLike, stamp: tuple | None, *, sha256: str | None = None, finite: bool = False,
             derived: dict | None = None) -> None:
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
    entry = {"path": key, "stamp": list(stamp), "sha256": checked.sha256, "finite": checked.finite,
             "derived": checked.derived}
    tmp = entry_path.with_name(f".{entry_path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        entry_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, entry_path)  # readers see the old entry or the new one, never half of one
    except (OSError, TypeError, ValueError):
        with contextlib.suppress(OSError):
            tmp.unlink()


# --- saving ------------------------------------------------------------------------------------


def _fault(step: str) -> None:
    if _fault_hook is not None:
        _fault_hook(step)


def _sibling(target: Path, role: str) -> Path:
    return target.parent / f".embswap-{role}-{target.name}-{uuid.uuid4().hex[:8]}"


def _siblings(target: Path, role: str) -> list[Path]:
    """Leftovers of earlier saves of exactly ``target`` (``de`` never matches ``de-ch``'s)."""
    pattern = re.compile(rf"\.embswap-{role}-{re.escape(target.name)}-[0-9a-f]{{8}}")
    try:
        return [p for p in target.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return []


def _lock_path(target: Path) -> Path:
    return target.parent / f".embswap-lock-{target.name}"


def _lock_timeout(timeout: float | None) -> float:
    if timeout is not None:
        return timeout
    try:
        return float(os.environ.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT_S))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT_S


@contextlib.contextmanager
def path_lock(target: str | os.PathLike, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive save lock of ``target``; waits up to ``timeout`` s (env EMBSWAP_LOCK_TIMEOUT).

    The lock file is removed on release; a waiter that then finds it gone or replaced locks the
    new one, so removal never lets two holders in.
    """
    if fcntl is None:
        yield
        return
    target = Path(target)
    lock, limit = _lock_path(target), _lock_timeout(timeout)
    deadline, pause = time.monotonic() + limit, 0.002
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ArtifactBusyError(
                            f"another process is saving {target} (it holds {lock.name}) and did not finish within "
                            f"{limit:g} s; wait for it, or raise {LOCK_TIMEOUT_ENV}"
                        ) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(lock))
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(fd)
            raise
        if current:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


class _FileWriteError(ArtifactWriteError):
    """A file of an artifact could not be written; ``atomic_folder`` names the artifact instead."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@contextlib.contextmanager
def _write_errors(target: Path) -> Iterator[None]:
    """An OSError while saving (no space, file too large, no permission) becomes one clear line.

    So does a SafetensorError: transformers' ``save_pretrained`` (an export) writes safetensors too.
    """
    existed = os.path.lexists(target)
    try:
        yield
    except _FileWriteError as err:
        reason = err.reason
    except EmbswapError:
        raise
    except (OSError, SafetensorError) as err:
        reason = _write_reason(err)
    else:
        return
    kept = "nothing was replaced: the previous artifact there is unchanged" if existed else "nothing was written there"
    raise ArtifactWriteError(
        f"could not save {target}: {reason}; {kept}: free disk space, raise the file-size limit or fix permissions, "
        "then save again"
    ) from None


_LIMITS = {errno.ENOSPC: "the disk is full", errno.EFBIG: "a file-size limit (ulimit -f) was hit",
           errno.EDQUOT: "the disk quota is used up"}  # fmt: skip


def _write_reason(err: BaseException) -> str:
    """Why a write failed, in words: safetensors reports an OSError as ``IoError(Os { code: 27, ...})`` or
    ``I/O error: File too large (os error 27)``."""
    code = getattr(err, "errno", None)
    if code is None and (found := re.search(r"\b(?:code: |os error )(\d+)", str(err))):
        code = int(found.group(1))
    if code is None:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return first.removeprefix("Error while serializing: ")
    words = getattr(err, "strerror", None) or os.strerror(code)
    return f"{words} (errno {code}{'; ' + _LIMITS[code] if code in _LIMITS else ''})"


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, *, lock_timeout: float | None = None) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``target`` in one atomic swap.

    Writers of one path take turns (a lock); a crash at any point leaves the old or the new
    artifact at ``target`` (plus ``.embswap-*`` siblings that readers ignore and the next save
    or read removes); an OSError becomes an ArtifactWriteError and leaves the old artifact.
    A finished folder of a kind ``outputs.kind_of`` recognises replaces only a missing or empty
    ``target`` or one of the same kind (``outputs.check_replace``), never a user's other files.
    """
    target = Path(target)
    with _write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        with path_lock(target, lock_timeout):
            _fault("locked")
            _recover(target)
            tmp = _sibling(target, "tmp")
            tmp.mkdir()
            try:
                _fault("tmp_created")
                yield tmp
                _fault("written")
                check_replace(tmp, target)
                _fsync_tree(tmp)
                _fault("synced")
                _swap_into_place(tmp, target)
                _fault("swapped")
            finally:
                _remove(tmp)  # the unfinished new folder, or the old artifact after an exchange
            _fault("cleaned")


def _swap_into_place(tmp: Path, target: Path) -> None:
    if not os.path.lexists(target):
        os.rename(tmp, target)
    elif not _rename_exchange(tmp, target):
        # No atomic exchange here: move the old one aside, then the new one in. A crash between
        # the two leaves only the old one aside, which the next reader or writer puts back.
        old = _sibling(target, "old")
        os.rename(target, old)
        _fault("moved_aside")
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)
            raise
        _fsync_dir(target.parent)
        _remove(old)
        return
    _fsync_dir(target.parent)


_renameat2 = None


def _rename_exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    global _renameat2
    if not _use_rename_exchange:
        return False
    if _renameat2 is None:
        try:
            _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
        except (OSError, AttributeError):  # libc without renameat2 (glibc < 2.28, musl)
            _renameat2 = False
    if _renameat2 is False:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if _renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):  # file system without it
        return False
    raise OSError(code, os.strerror(code), str(b))


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(OSError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _recover(target: Path) -> None:
    """Under the lock: put back an artifact a crash left aside; drop other leftovers of ``target``."""
    olds = sorted(_siblings(target, "old"), key=lambda p: p.stat().st_mtime_ns)
    if olds and not os.path.lexists(target):
        os.rename(olds.pop(), target)
    for stale in olds + _siblings(target, "tmp"):
        _remove(stale)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            _fsync_dir(path)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    """Make renames and new entries in ``folder`` durable; some file systems refuse, which is fine."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors with contiguous CPU tensors and the ``format: pt`` metadata transformers expects."""
    clean = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    try:
        save_file(clean, str(path), metadata={"format": "pt"})
    except SafetensorError as err:
        reason = f"writing {Path(path).name} failed ({_write_reason(err)})"
        raise _FileWriteError(f"could not write {path}: {reason}; free disk space or fix permissions, then save again", reason) from None


# --- reading -----------------------------------------------------------------------------------


def settle(location: str | os.PathLike) -> None:
    """Before reading a local path that is missing: wait for a save in progress, undo a crashed one.

    A no-op (one stat) when the path exists; only the two-rename fallback ever leaves it missing.
    """
    try:
        target = Path(location)
        if os.path.lexists(target) or not target.parent.is_dir():
            return
        if not (_lock_path(target).exists() or _siblings(target, "old")):
            return
    except (OSError, ValueError):
        return
    try:
        with path_lock(target):
            _recover(target)
    except ArtifactBusyError:
        raise
    except OSError:  # read-only place: nothing we may repair
        return


def locate(location: str | os.PathLike, resolve: Callable[[], Path], attempts: int = 8) -> Path:
    """``resolve()`` the folder of ``location``, waiting out saves that have it moved aside right now.

    Only the two-rename fallback ever leaves a saved path missing, and only while its writer
    holds the lock; a local path missing for any other reason fails at once.
    """
    for attempt in range(attempts):
        settle(location)
        try:
            return resolve()
        except ArtifactNotFoundError:
            target = Path(location)
            busy = os.path.lexists(target) or _lock_path(target).exists() or _siblings(target, "old")
            if attempt == attempts - 1 or not busy:
                raise
    raise AssertionError("unreachable")


def _identity(folder: Path) -> tuple | None:
    try:
        st = os.stat(folder)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


def read_consistently(folder: Path, read: Callable[[], T], attempts: int = 8) -> T:
    """Run ``read`` again when a save replaced ``folder`` meanwhile, so it sees one whole artifact.

    Files are opened by path, so a read that overlaps a swap could mix the old config with the new
    weights, or find a file gone; a swap gives the folder a new inode, which is how such a read is
    recognised. An OSError that no swap explains becomes a CorruptArtifactError.
    """
    for _ in range(attempts):
        settle(folder)
        before = _identity(folder)
        try:
            result = read()
        except (EmbswapError, OSError) as err:
            if _identity(folder) != before:
                continue
            if isinstance(err, EmbswapError):
                raise
            raise CorruptArtifactError(
                f"{folder} cannot be read ({err.strerror or type(err).__name__}: {shown_name(str(err.filename or ''))}); "
                "check its permissions, or download or save it again"
            ) from None
        if _identity(folder) == before:
            return result
    # Saves keep landing while we read (a busy writer, a slow machine): wait our turn on the
    # writers' lock, under which no save can swap the folder, instead of giving up.
    try:
        with path_lock(folder):
            settle(folder)
            return read()
    except OSError:  # no lock file can be made here (a read-only folder): nothing else to try
        pass
    raise ArtifactBusyError(f"{folder} was replaced {attempts} times while being read; read it when no save is running")


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


def load_json(path: Path, *, max_bytes: int = MAX_CONFIG_BYTES, max_containers: int = MAX_CONFIG_CONTAINERS,
              what: str | None = None) -> object:
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
                raise CorruptArtifactError(f"{folder / name} cannot be read ({err.strerror}); check its permissions") from None
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
