"""Parallel text: sentence pairs ``{"source": L1, "target": L2}`` from files or named sources.

One reader for every command and objective that takes pairs (the align objective, the aligned init,
retrieval scoring, robust packs): JSONL ``{source, target}`` or TSV ``source<TAB>target`` files, or
a named source such as ``bible:4-e,4-s:test`` (:mod:`embswap.data.bible`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import DataError
from .text import nonblank_lines


def validate_pairs(pairs: Sequence[dict], origin: str = "parallel data") -> list[dict]:
    """Every pair needs a non-empty source (L1) and target (L2); errors name the row."""
    if not pairs:
        raise DataError(f"{origin} holds no sentence pairs; give parallel text as JSONL {{source, target}} or TSV")
    for i, pair in enumerate(pairs, start=1):
        for side in ("source", "target"):
            value = pair.get(side)
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{origin}, pair {i}: the {side} side is empty; remove the pair or fill it in")
    return list(pairs)


def read_parallel(path: str | os.PathLike) -> list[dict]:
    """Parallel text from JSONL ({"source", "target"}) or TSV (source<TAB>target) files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"parallel file {path} does not exist")
    pairs = []
    for number, line in nonblank_lines(path):
        if path.suffix in (".jsonl", ".json"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict) or "source" not in row or "target" not in row:
                raise DataError(f"{path}:{number}: expected an object with 'source' and 'target'")
        else:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise DataError(f"{path}:{number}: expected 'source<TAB>target', found {len(parts)} fields")
            row = {"source": parts[0], "target": parts[1]}
        pairs.append(row)
    return validate_pairs(pairs, str(path))


def read_parallel_source(spec: str) -> list[dict]:
    """Pairs from a JSONL/TSV file or a named parallel source such as ``bible:4-e,4-s:test``."""
    from .bible import is_named_source, resolve_source

    if not is_named_source(spec):
        return read_parallel(spec)
    rows = resolve_source(spec)
    if not rows or not isinstance(rows[0], dict) or "source" not in rows[0]:
        raise DataError(f"{spec} holds no sentence pairs; name a parallel source such as bible:4-e (translation codes)")
    return validate_pairs(rows, spec)


def read_parallel_sources(specs: Iterable[str]) -> list[dict]:
    """The pairs of every spec (file or named source), in order."""
    return [pair for spec in specs for pair in read_parallel_source(spec)]
