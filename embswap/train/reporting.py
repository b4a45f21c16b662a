"""What a training run shows and leaves behind: the JSONL log, the learning curve, the progress bar."""

from __future__ import annotations

import json
from pathlib import Path

LOG_NAME = "training_log.jsonl"
CURVE_NAME = "learning_curve.png"


def read_log(path: Path, up_to_step: int | None = None) -> list[dict]:
    """The records of a JSONL training log (``[]`` when absent), up to a line cut by a crash."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by a crash ends the usable log
        if up_to_step is not None and record.get("step", 0) > up_to_step:
            break
        records.append(record)
    return records


def plot_learning_curve(records: list[dict], path: Path, title: str = "") -> Path | None:
    """Training loss (and every eval_* metric) against step, as a PNG; None when nothing to plot."""
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        for key, value in r.items():
            if key.startswith("eval_") and isinstance(value, (int, float)):
                evals.setdefault(key, []).append((r["step"], value))
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1)
    for key, points in sorted(evals.items()):
        ax.plot(*zip(*points), marker="o", markersize=3, label=key.replace("_", " "))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def progress_bar(description: str, enabled: bool):
    import sys

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..outputs import tolerate_closed

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]} tok/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(file=tolerate_closed(sys.stderr)),  # a closed stderr must not stop the run
        disable=not enabled,
        transient=False,
    )
