"""What embswap may write over: the one guard of every output path, and output streams that close.

Output paths. A save replaces whatever its path names, so every command checks its output path
before it starts (``check_output``), and ``io.atomic_folder`` checks it again under the save lock,
just before the swap, for any folder whose kind it recognises (``check_replace``). A path may be
replaced only when it is missing, an empty folder, or something of the kind being written; never a
file, a link, a folder of other files, a thing of another kind, a path inside an artifact, or an
input of the command (the same path, a folder inside one, or a folder that holds one).

Kinds are recognised by what a folder holds: a body, language pack or task module by its
config.json ``kind``, and only while every file in it is one its config lists (so a file a user
put there is never deleted with it); a composed model folder by the ``embswap_export`` entry that
``mark_export`` adds to its config.json, listing its files; a tokenizer folder by its file names; a
store by its ``body/``, ``packs/``, ``tasks/`` layout; a demo folder by its ``demo_config.json``; the
embeddings ``interop.export_adapters_embeddings`` writes by ``embedding.pt`` beside a tokenizer folder and
nothing else. A model card is written only into an artifact or a store, over an earlier card only when
asked (``check_card``).

Streams. Progress bars and log lines written to a closed pipe (``embswap ... | head``) raise
BrokenPipeError; ``tolerate_closed`` wraps a stream so that such output is dropped and the run, and
its save, go on.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ._version import __version__
from .constants import CONFIG_NAME, EVAL_RESULTS, IGNORED_FILES, MODEL_CARD, STORE_BODY, STORE_PACKS, STORE_TASKS
from .errors import OutputPathError

ARTIFACT_KINDS = ("body", "language_pack", "task_module")
STORE = "store"
MODEL = "model"  # a composed Hugging Face model folder (`embswap compose`, ``embswap.export``)
TOKENIZER = "tokenizer"
DEMO = "demo"
ADAPTERS = "adapters_embeddings"  # interop.export_adapters_embeddings: embedding.pt + tokenizer/
FILE = "file"
KINDS = (*ARTIFACT_KINDS, STORE, MODEL, TOKENIZER, DEMO, ADAPTERS, FILE)

# What else a path can hold.
MISSING, EMPTY, LINK, SPECIAL, FOLDER = "missing", "empty folder", "link", "special file", "folder"

EXPORT_KEY = "embswap_export"
DEMO_CONFIG = "demo_config.json"
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "spiece.model",
        "sentencepiece.bpe.model",
        "spm.model",
        "tokenizer.model",
        "chat_template.jinja",
        "chat_template.json",
    }
)
_STORE_FOLDERS = frozenset({STORE_BODY, STORE_PACKS, STORE_TASKS})
_STORE_FILES = frozenset({MODEL_CARD, ".gitattributes", EVAL_RESULTS})
_DEMO_ENTRIES = frozenset({"store", "cache", "report", DEMO_CONFIG})
_ADAPTERS_ENTRIES = ("embedding.pt", "tokenizer")  # the names interop.py (adapters' own layout) writes
_MAX_WALK = 10_000  # files a recognised folder may hold; a bigger one is not something embswap wrote

LABELS = {
    "body": "body",
    "language_pack": "language pack",
    "task_module": "task module",
    STORE: "store",
    MODEL: "composed model folder",
    TOKENIZER: "tokenizer folder",
    DEMO: "demo folder",
    ADAPTERS: "adapters embeddings folder",
    FILE: "file",
    EMPTY: "empty folder",
    LINK: "symbolic link",
    SPECIAL: "pipe, socket or device",
    FOLDER: "folder of other files",
}


def _label(kind: str) -> str:
    return LABELS.get(kind, kind)


def _article(label: str) -> str:
    return "an" if label[0] in "aeiou" else "a"


def _small_json(path: Path):
    """A config file's JSON, or None when it is missing, too big, or not JSON (then it is not ours)."""
    from .safety import MAX_CONFIG_BYTES

    try:
        st = os.stat(path, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_CONFIG_BYTES:
            return None
        with open(path, "rb") as handle:
            return json.loads(handle.read(MAX_CONFIG_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def _hidden_is_ours(name: str) -> bool:
    """Entries embswap itself leaves beside artifacts: save leftovers, locks, training checkpoints."""
    return name.startswith(".embswap-") or (name.startswith(".") and name.endswith(".checkpoint"))


def _configured(folder: Path) -> tuple[str, str]:
    """The kind of a folder with a config.json: an artifact or a composed model, else FOLDER and why."""
    config = _small_json(folder / CONFIG_NAME)
    if not isinstance(config, dict):
        return FOLDER, f"its {CONFIG_NAME} is not an embswap config"
    kind = config.get("kind")
    if kind in ARTIFACT_KINDS:
        listed, extras = config.get("files"), IGNORED_FILES
    elif isinstance(config.get(EXPORT_KEY), dict):
        kind, listed, extras = MODEL, config[EXPORT_KEY].get("files"), frozenset()
    else:
        return FOLDER, f"its {CONFIG_NAME} is not an embswap artifact's or export's"
    if not isinstance(listed, (dict, list)):
        return FOLDER, f"its {CONFIG_NAME} lists no files"
    listed = {name for name in listed if isinstance(name, str)}
    seen = 0

    def unreadable(err: OSError):
        raise err

    try:
        for root, dirs, files in os.walk(folder, onerror=unreadable):
            for name in dirs:
                if os.path.islink(os.path.join(root, name)):
                    return FOLDER, f"{name} is a link"
            for name in files:
                seen += 1
                path = os.path.join(root, name)
                rel = Path(os.path.relpath(path, folder)).as_posix()
                if rel == CONFIG_NAME:
                    continue
                if seen > _MAX_WALK or not stat.S_ISREG(os.lstat(path).st_mode):
                    return FOLDER, f"{rel} is not a file its {CONFIG_NAME} lists"
                if rel not in listed and name not in extras:
                    return FOLDER, f"it holds {rel}, which its {CONFIG_NAME} does not list"
    except OSError as err:
        return FOLDER, f"part of it cannot be read ({err.strerror})"
    return kind, ""


def _inspect(path: Path) -> tuple[str, str]:
    """(kind, why a folder is not recognised) of whatever ``path`` names."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return MISSING, ""
    except OSError as err:
        return FOLDER, f"it cannot be read ({err.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return LINK, ""
    if stat.S_ISREG(st.st_mode):
        return FILE, ""
    if not stat.S_ISDIR(st.st_mode):
        return SPECIAL, ""
    try:
        with os.scandir(path) as scan:
            entries = {entry.name: entry for entry in scan}
    except OSError as err:
        return FOLDER, f"it cannot be listed ({err.strerror})"
    if not entries:
        return EMPTY, ""
    if CONFIG_NAME in entries:
        return _configured(path)
    if _ADAPTERS_ENTRIES[0] in entries:
        return _adapters_embeddings(path, entries)
    if "tokenizer_config.json" in entries or "tokenizer.json" in entries:
        if all(name in TOKENIZER_FILES and entry.is_file(follow_symlinks=False) for name, entry in entries.items()):
            return TOKENIZER, ""
        return FOLDER, "it holds files besides a tokenizer's"
    foreign = sorted(name for name in entries if not _hidden_is_ours(name))
    if DEMO_CONFIG in entries:
        unknown = [name for name in foreign if name not in _DEMO_ENTRIES]
        return (FOLDER, f"it holds {unknown[0]}, which a demo does not write") if unknown else (DEMO, "")
    store_like = any(name in _STORE_FOLDERS for name in foreign)
    # Hidden entries of other tools (.git of a cloned store, .DS_Store) are allowed: commands write
    # only into body/, packs/ and tasks/ of a store, never over those entries.
    for name in (n for n in foreign if not n.startswith(".")):
        entry = entries[name]
        is_dir, is_file = entry.is_dir(follow_symlinks=False), entry.is_file(follow_symlinks=False)
        if not ((name in _STORE_FOLDERS and is_dir) or (name in _STORE_FILES and is_file)):
            return FOLDER, f"it holds {name}" + (", which is not part of a store" if store_like else "")
    return STORE, ""


def _adapters_embeddings(path: Path, entries: dict) -> tuple[str, str]:
    """ADAPTERS when ``path`` holds embedding.pt (a file) and a tokenizer folder, and nothing else."""
    weights, tokenizer = (entries.get(name) for name in _ADAPTERS_ENTRIES)
    foreign = sorted(name for name in entries if name not in _ADAPTERS_ENTRIES)
    if foreign:
        return FOLDER, f"it holds {foreign[0]}, which adapters' embeddings do not"
    if not weights.is_file(follow_symlinks=False):
        return FOLDER, f"{_ADAPTERS_ENTRIES[0]} is not a file"
    if tokenizer is None or _inspect(path / _ADAPTERS_ENTRIES[1])[0] != TOKENIZER:
        return FOLDER, f"{_ADAPTERS_ENTRIES[1]}/ is not a tokenizer folder"
    return ADAPTERS, ""


def kind_of(path: str | os.PathLike) -> str:
    """What ``path`` names: one of KINDS, or MISSING, EMPTY, LINK, SPECIAL, FOLDER (anything else)."""
    return _inspect(Path(path))[0]


def _owning_artifact(folder: Path) -> str | None:
    """The kind of artifact ``folder`` is (judged by its config.json alone), or None."""
    if not os.path.isfile(folder / CONFIG_NAME):
        return None
    config = _small_json(folder / CONFIG_NAME)
    if not isinstance(config, dict):
        return None
    if config.get("kind") in ARTIFACT_KINDS:
        return config["kind"]
    return MODEL if isinstance(config.get(EXPORT_KEY), dict) else None


def _owning_folder(folder: Path) -> str | None:
    """TOKENIZER or ADAPTERS when ``folder`` is one (a folder added inside would make it neither), else None."""
    if not any(os.path.lexists(folder / name) for name in ("tokenizer.json", "tokenizer_config.json", "embedding.pt")):
        return None  # cheap: most folders above an output are listed only when they might be one
    found = _inspect(folder)[0]
    return found if found in (TOKENIZER, ADAPTERS) else None


def _check_place(target: Path) -> None:
    """``target`` is no link, and no folder above it is a file or an artifact it would add files to."""
    if os.path.islink(target):
        raise OutputPathError(
            f"{target} is a symbolic link; embswap does not write over links: give the real path, or another one"
        )
    for above in Path(os.path.abspath(target)).parents:
        if not os.path.lexists(above):
            continue
        if not os.path.isdir(above):
            raise OutputPathError(f"{above} is a file, so {target} cannot be written; choose another output path")
        owner = _owning_artifact(above) or _owning_folder(above)
        if owner is not None:
            label = _label(owner)
            raise OutputPathError(
                f"{target} is inside {above}, {_article(label)} {label}: writing there would change it; "
                "choose an output path outside it"
            )


def _check_inputs(target: Path, inputs: Iterable) -> None:
    """``target`` is not an input, inside one, or a folder holding one (links followed)."""
    real = Path(os.path.realpath(target))
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)) or not os.fspath(item):
            continue  # an artifact object, or nothing given
        if not os.path.lexists(item):
            continue  # a Hub id or a named source such as bible:de
        source = Path(os.path.realpath(item))
        if source == real:
            how = "is"
        elif source in real.parents:
            how = "is inside"
        elif real in source.parents:
            how = "holds"
        else:
            continue
        raise OutputPathError(
            f"{target} {how} {os.fspath(item)}, an input of this command; write the output somewhere else"
        )


def check_output(
    target: str | os.PathLike,
    kind: str,
    *,
    inputs: Iterable = (),
    replace: bool = True,
    flag: str | None = None,
) -> Path:
    """Refuse, with one OutputPathError line, to write ``kind`` at ``target`` unless that is safe.

    Safe: ``target`` is missing, an empty folder (not for a FILE), or holds ``kind`` already;
    a store or demo folder is written into, anything else of ``kind`` is replaced only when
    ``replace`` (else the message names ``flag``, the option that allows it). ``inputs``: paths the
    command reads (others, such as Hub ids and artifact objects, are skipped).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {KINDS}")
    target = Path(target)
    label = _label(kind)
    _check_place(target)
    _check_inputs(target, inputs)
    found, why = _inspect(target)
    if found == MISSING or (found == EMPTY and kind != FILE):
        return target
    if found == kind:
        if replace or kind in (STORE, DEMO):
            return target
        how = f"pass {flag}" if flag else "allow it (overwrite=True)"
        raise OutputPathError(
            f"{target} already holds {_article(label)} {label}; {how} to replace it, or choose another output path"
        )
    if kind == FILE and found != SPECIAL:
        raise OutputPathError(f"{target} is a folder, not a file; give a file path")
    if found == FOLDER:
        raise OutputPathError(
            f"{target} is a folder that is not {_article(label)} {label} ({why}); embswap replaces only "
            f"{_article(label)} {label} it wrote: choose another output path"
        )
    shown = _label(found)
    raise OutputPathError(
        f"{target} is {_article(shown)} {shown}, not {_article(label)} {label}; embswap will not replace it: "
        "choose another output path"
    )


def check_replace(new: Path, target: Path) -> None:
    """Before ``new`` (a finished folder) replaces ``target``: ``target`` must be missing, empty or of new's kind.

    Folders of no recognised kind (checkpoints, reports, caches, all at paths embswap chose) are not checked.
    """
    kind = kind_of(new)
    if kind in KINDS:
        check_output(target, kind)


def check_card(folder: str | os.PathLike, *, replace: bool = False, flag: str | None = None) -> Path:
    """The README.md path a model card may be written to in ``folder``, or one OutputPathError line.

    ``folder`` must be an artifact or a store (so no folder of a user's own files gets a README.md);
    an existing README.md, perhaps edited by hand since, is replaced only when ``replace`` (else the
    message names ``flag``), and never when it is a link or not a file.
    """
    folder = Path(folder)
    _check_place(folder)
    found, why = _inspect(folder)
    if found == MISSING:
        raise OutputPathError(f"{folder} does not exist; pass an artifact folder or a store")
    if found == STORE and not any(os.path.isdir(folder / name) for name in _STORE_FOLDERS):
        found, why = FOLDER, "it has no body/, packs/ or tasks/"  # only a README.md and such: a user's folder
    if found not in (*ARTIFACT_KINDS, STORE):
        shown = _label(found) + (f" ({why})" if why else "")
        raise OutputPathError(
            f"{folder} is {_article(shown)} {shown}, not an artifact or a store; embswap writes a model card "
            "only into one of those: pass an artifact folder or a store"
        )
    card = folder / MODEL_CARD
    try:
        st = os.lstat(card)
    except FileNotFoundError:
        return card
    if not stat.S_ISREG(st.st_mode):
        raise OutputPathError(f"{card} is not a plain file; embswap will not write over it: move it away first")
    if not replace:
        how = f"pass {flag}" if flag else "allow it (replace=True)"
        raise OutputPathError(
            f"{card} already exists (it may hold your edits); {how} to replace it with the generated card"
        )
    return card


def mark_export(folder: Path, **fields) -> None:
    """Record in a composed model folder's config.json that embswap wrote it, and its files.

    ``check_output`` then recognises the folder as a composed model that a later export may
    replace; transformers keeps the entry as an ordinary config attribute.
    """
    path = folder / CONFIG_NAME
    config = json.loads(path.read_text(encoding="utf-8"))
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    files.remove(CONFIG_NAME)
    config[EXPORT_KEY] = {"embswap_version": __version__, "files": files, **fields}
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[io.TextIOBase]:
    """A UTF-8 text handle on a temporary sibling that replaces ``target`` (flushed to disk) on success.

    The path names the old file or the whole new one at every moment; on an error the temporary
    file is removed and ``target`` is unchanged.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- streams that may close ----------------------------------------------------------------------


def _closed_pipe(err: OSError) -> bool:
    return isinstance(err, BrokenPipeError) or err.errno in (errno.EPIPE, errno.ESHUTDOWN)


class _TolerantStream:
    """A text stream whose writes to a closed pipe are dropped instead of raising."""

    def __init__(self, stream):
        self._stream = stream
        self._closed = False

    def write(self, text):
        if not self._closed:
            try:
                return self._stream.write(text)
            except OSError as err:
                if not _closed_pipe(err):
                    raise
                self._drop()
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self._closed:
            try:
                self._stream.flush()
            except OSError as err:
                if not _closed_pipe(err):
                    raise
                self._drop()

    def _drop(self) -> None:
        self._closed = True
        # Point the descriptor at /dev/null: what the wrapped stream still buffers, other writers of
        # the same descriptor and the flush at exit then succeed instead of raising again.
        try:
            fd = self._stream.fileno()
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def tolerate_closed(stream):
    """``stream`` wrapped so that output to a closed pipe is dropped (the same object if already so)."""
    if stream is None or isinstance(stream, _TolerantStream):
        return stream
    return _TolerantStream(stream)
