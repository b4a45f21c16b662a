"""What the quality benchmarks' engine (``_grid.py``) schedules: one artifact to build or one score to compute."""

from __future__ import annotations

from dataclasses import dataclass

from _variants import Variant

# The phases Grid.run executes in order: every job of a phase needs only earlier phases' artifacts.
PHASES = ("tokenizer", "build", "task", "score")
PHASE_OF = {"tokenizer": "tokenizer", "pack": "build", "robust": "build", "joint-body": "build", "task": "task"}


@dataclass(frozen=True)
class Job:
    """One artifact to build or one score to compute; ``which`` (scores): english | pack | self | random."""

    kind: str  # tokenizer | pack | robust | joint-body | task | score | curve
    variant: Variant | None = None
    language: str | None = None
    task: str | None = None
    which: str | None = None
