"""Atomic, locked saves of artifact folders, and reads that wait out a save in progress.

The whole folder is built beside the target (``.embswap-tmp-<name>-*``), flushed to disk, and
swapped in with one ``renameat2(RENAME_EXCHANGE)`` on Linux, so the path always names a whole
artifact, the old or the new one; elsewhere two renames with a recovery step. A lock (``flock`` on
``.embswap-lock-<name>``) serialises writers of one path; a second writer waits. A read that
overlapped a swap is repeated.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..errors import ArtifactBusyError, ArtifactNotFoundError, ArtifactWriteError, CorruptArtifactError, EmbswapError
from ..outputs import check_replace
from ..safety import shown_name

try:
    import fcntl
except ImportError:  # Windows: saves stay atomic, but concurrent writers of one path are not serialised
    fcntl = None

T = TypeVar("T")

LOCK_TIMEOUT_ENV = "EMBSWAP_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 300.0

# Tests set these: a callable run at each step of a save (crash injection), and whether to use
# RENAME_EXCHANGE (False exercises the two-rename fallback other systems get).
_fault_hook: Callable[[str], None] | None = None
_use_rename_exchange = sys.platform.startswith("linux")


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
        raise _FileWriteError(
            f"could not write {path}: {reason}; free disk space or fix permissions, then save again", reason
        ) from None


# --- reading while saves happen ------------------------------------------------------------


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
