"""Reading and writing artifact folders: atomic, locked saves; validated safetensors and configs.

Three modules, one idea each, re-exported here: :mod:`embswap.io.checked` (what has been verified
about a file), :mod:`embswap.io.atomic` (saving, locking, reading while saves happen) and
:mod:`embswap.io.reading` (validated configs, files, tensors and JSON).

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

from .atomic import (
    DEFAULT_LOCK_TIMEOUT_S,
    LOCK_TIMEOUT_ENV,
    atomic_folder,
    locate,
    path_lock,
    read_consistently,
    save_tensors,
    settle,
)
from .checked import (
    CheckedFile,
    check_cache_dir,
    file_sha256,
    file_stamp,
    forget_checked,
    recall,
    remember,
    tensor_bytes,
)
from .reading import (
    check_files,
    load_json,
    load_tensors,
    optional_dict,
    precheck_file,
    present_files,
    read_config,
    require,
    require_sha256,
    write_config,
)

__all__ = [
    "CheckedFile",
    "DEFAULT_LOCK_TIMEOUT_S",
    "LOCK_TIMEOUT_ENV",
    "atomic_folder",
    "check_cache_dir",
    "check_files",
    "file_sha256",
    "file_stamp",
    "forget_checked",
    "load_json",
    "load_tensors",
    "optional_dict",
    "locate",
    "path_lock",
    "precheck_file",
    "present_files",
    "read_config",
    "read_consistently",
    "recall",
    "remember",
    "require",
    "require_sha256",
    "save_tensors",
    "settle",
    "tensor_bytes",
    "write_config",
]
