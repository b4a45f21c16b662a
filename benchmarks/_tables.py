"""Pure helpers of the quality benchmarks' results: summaries over seeds, cells, tables, curves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def first_reaching(points: Sequence[dict], fraction: float = 0.9, key: str = "accuracy") -> dict | None:
    """The first curve point whose ``key`` reaches ``fraction`` of the last point's (None: no points)."""
    if not points:
        return None
    target = fraction * points[-1][key]
    for point in points:
        if point[key] >= target:
            return {"target": target, **{k: point[k] for k in ("steps", "tokens", key) if k in point}}
    return None  # unreachable: the last point always reaches its own fraction


def mean_and_values(values: Sequence[float | None]) -> dict:
    """{"mean", "values"} of the measured values; None when any seed has no value."""
    if not values or any(v is None for v in values):
        return {"mean": None, "values": list(values)}
    return {"mean": round(sum(values) / len(values), 2), "values": [round(v, 2) for v in values]}


def format_cell(cell: dict | None, note: str | None = None) -> str:
    """Markdown cell: ``mean (a, b)`` over seeds, the value alone for one seed, or the cell's note."""
    note = note or (cell or {}).get("note")
    if note:
        return note
    if not cell or cell["mean"] is None:
        return "-"
    values = cell["values"]
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{cell['mean']:.1f} ({', '.join(f'{v:.1f}' for v in values)})"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def iter_percentages(data, keys: tuple[str, ...] = ("accuracy", "macro_f1")) -> Iterable[float]:
    """Every value under one of ``keys`` nested anywhere in ``data`` (tests check they are percentages)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in keys and not isinstance(value, (dict, list)):
                yield value
            else:
                yield from iter_percentages(value, keys)
    elif isinstance(data, list):
        for value in data:
            yield from iter_percentages(value, keys)
