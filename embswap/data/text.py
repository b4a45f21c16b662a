"""Where training text comes from: one helper for every command that reads text.

A spec is a plain UTF-8 file (one sentence or document a line; ``.jsonl`` files give their
``text`` field), or a named offline source such as ``bible:de`` (see :mod:`embswap.data.bible`).
Online users can also read a Hugging Face dataset column through ``datasets``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import DataError, EmbswapError


def _is_named(spec: str) -> bool:
    try:
        from .bible import is_named_source
    except ImportError:  # pragma: no cover - the Bible reader ships with embswap
        return False
    return is_named_source(spec)


def _named_source(spec: str) -> list[str]:
    from .bible import resolve_source

    rows = resolve_source(spec)
    if rows and not isinstance(rows[0], str):
        raise DataError(f"{spec!r} is a task or parallel source, not text; for language text use e.g. bible:de")
    return list(rows)


def nonblank_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(number from 1, line) of each line of a UTF-8 file that holds more than white space, as the file streams."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


def _read_file(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"text file {path} does not exist; pass UTF-8 text files (one sentence or document a line)")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); convert it to UTF-8") from None
    if path.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataError(f"{path}:{number}: expected an object with a string field 'text'")
            texts.append(row["text"])
        return texts
    return [line.strip() for line in content.splitlines() if line.strip()]


def read_dataset(name: str, *, config: str | None = None, split: str = "train", column: str = "text") -> list[str]:
    """A text column of a Hugging Face dataset (needs ``datasets`` and a network or a local cache)."""
    try:
        import datasets
    except ImportError:
        raise EmbswapError("reading --dataset needs the datasets library: pip install 'embswap[data]'") from None
    try:
        data = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds; the user needs one line
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"cannot load dataset {name!r} (config {config!r}, split {split!r}): {first}") from None
    if column not in data.column_names:
        raise DataError(f"dataset {name!r} has no column {column!r}; its columns: {', '.join(data.column_names)}")
    return [t.strip() for t in data[column] if isinstance(t, str) and t.strip()]


def read_texts(
    specs: Sequence[str],
    *,
    dataset: str | None = None,
    dataset_config: str | None = None,
    split: str = "train",
    column: str = "text",
) -> list[str]:
    """Every non-empty line of every spec (files, named sources), then the dataset column if given."""
    texts: list[str] = []
    for spec in specs:
        spec = str(spec)
        texts.extend(_named_source(spec) if _is_named(spec) else _read_file(Path(spec)))
    if dataset is not None:
        texts.extend(read_dataset(dataset, config=dataset_config, split=split, column=column))
    return [t for t in texts if t and t.strip()]


def describe(specs: Sequence[str], dataset: str | None = None, **dataset_args) -> list[str]:
    """How a run's text is named in provenance: the specs, and the dataset with its arguments."""
    out = [str(s) for s in specs]
    if dataset is not None:
        extra = ",".join(f"{k}={v}" for k, v in dataset_args.items() if v is not None)
        out.append(f"dataset:{dataset}" + (f"[{extra}]" if extra else ""))
    return out
