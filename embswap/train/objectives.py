"""The step-2 objective registry: named builders of weighted loss terms.

An objective registers its builder in the module that defines it (``mlm`` in embswap/train/mlm.py,
``align`` in embswap/train/align.py) and is then named in ``run_transfer(objective=...)`` ("align",
"mlm+align") without touching the loop. Light: no torch at import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import EmbswapError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from ..artifacts import Body, LanguagePack
    from .loop import BatchSource


@dataclass
class LossTerm:
    """One part of the step-2 objective: ``weight * loss(model, batch)``.

    ``batches`` gives the term its own data (e.g. parallel sentence pairs); None means the term
    reads the MLM text batches.
    """

    name: str
    loss: Callable[[PreTrainedModel, dict], torch.Tensor]
    weight: float = 1.0
    batches: BatchSource | None = None


@dataclass
class ObjectiveContext:
    """What an objective builder may use to make its loss terms."""

    body: Body
    tokenizer: object
    reference_pack: LanguagePack | None
    text_batches: BatchSource | None  # the MLM text batches (embswap.train.mlm.MLMBatches), when there is text
    seed: int
    batch_size: int
    seq_len: int
    options: dict = field(default_factory=dict)
    max_steps: int | None = None  # steps the run will take: data only those steps read need preparing
    progress: bool = True  # the caller wants progress bars (on stderr) for slow preparation


_OBJECTIVES: dict[str, Callable[[ObjectiveContext], list[LossTerm]]] = {}


def register_objective(name: str, build: Callable[[ObjectiveContext], list[LossTerm]]) -> None:
    """Make ``name`` usable in ``transfer(objective=...)``, alone or joined with ``+``."""
    _OBJECTIVES[name] = build


def objective_names() -> list[str]:
    return sorted(_OBJECTIVES)


def build_loss_terms(objective: str, context: ObjectiveContext) -> list[LossTerm]:
    names = [part.strip() for part in objective.split("+") if part.strip()]
    unknown = [n for n in names if n not in _OBJECTIVES]
    if not names or unknown:
        raise EmbswapError(
            f"unknown objective {objective!r}; available: {', '.join(objective_names())} (join several with '+')"
        )
    return [term for name in names for term in _OBJECTIVES[name](context)]
