"""Anchored rows in step 2: the rows an init copied from the reference pack, and how they train.

``free`` rows train like any other, ``frozen`` ones never move (their gradients are zeroed), and
``penalty`` lets them train under a pull back to their start (:func:`anchor_penalty_term`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from transformers import PreTrainedModel

from ..architectures import word_embeddings
from ..choices import ANCHOR_MODES
from ..errors import DataError, EmbswapError
from .objectives import LossTerm

# Weight of the anchor penalty (relative squared drift of the anchored rows, see anchor_penalty_term):
# about ln(vocabulary size) for 8k-32k vocabularies, i.e. the MLM loss at the start of step 2, so that
# anchored rows drifting by their own length cost as much as the whole MLM loss did at step 0.
DEFAULT_ANCHOR_PENALTY = 10.0


def check_anchors(anchors: str) -> None:
    if anchors not in ANCHOR_MODES:
        raise EmbswapError(f"unknown anchors mode {anchors!r}; expected one of: {', '.join(ANCHOR_MODES)}")


def resolve_anchors(anchors: str, init: str) -> str:
    """``auto``: frozen for dictionary anchors, free for every other init. The 2-seed ablation
    (benchmarks/results/quality_ablation.md) found frozen dictionary rows ahead of free ones at every
    N (200 / 1000 / 5000, averaged over German, Russian and Hindi); other inits were measured free."""
    check_anchors(anchors)
    if anchors != "auto":
        return anchors
    return "frozen" if init == "dictionary" else "free"


def anchor_penalty_weight(anchors: str, weight: float | None) -> float | None:
    """The penalty weight of an ``anchors`` mode: the default for "penalty", None for the others."""
    if anchors != "penalty":
        if weight is not None:
            raise EmbswapError(f"an anchor penalty weight applies to anchors 'penalty', not {anchors!r}")
        return None
    weight = DEFAULT_ANCHOR_PENALTY if weight is None else float(weight)
    if not weight > 0:
        raise EmbswapError(
            f"the anchor penalty weight is {weight}; give a positive number (default {DEFAULT_ANCHOR_PENALTY})"
        )
    return weight


def freeze_rows(trainable: Mapping[str, nn.Parameter], rows: set[int]) -> list:
    """Zero the gradients of anchored rows (embedding and bias); with no weight decay they never move."""
    handles = []
    if not rows:
        return handles
    index = torch.tensor(sorted(rows), dtype=torch.long)
    for name in ("word_embeddings", "output_bias"):
        if name not in trainable:
            continue
        param = trainable[name]
        keep = torch.ones(param.shape[0], dtype=param.dtype)
        keep[index] = 0
        keep = keep.view(-1, *([1] * (param.dim() - 1)))
        handles.append(param.register_hook(lambda grad, keep=keep: grad * keep.to(grad.device)))
    return handles


def _no_batch(step: int, process_index: int = 0, num_processes: int = 1) -> dict:
    return {}  # a loss term that reads only the model needs no data (and no text)


def anchor_penalty_term(initial: torch.Tensor, anchored: set[int], weight: float) -> LossTerm:
    """``weight * sum ||e_i - e0_i||^2 / sum ||e0_i||^2`` over the anchored rows ``i``.

    The relative squared drift of the anchored block from its initial (reference) values: the rows
    still learn, but are pulled back towards the basis they were copied from. Scale-free, so one
    weight suits any body's embedding norm.
    """
    if not anchored:
        raise DataError(
            "anchors 'penalty' pulls the rows copied from the reference pack back to their start, but this init "
            "anchored none; use --init overlap, dictionary or subword-mean with --reference-pack"
        )
    index = torch.tensor(sorted(anchored), dtype=torch.long)
    start = initial[index].detach().float().clone()  # [anchored, dim]
    scale = start.pow(2).sum().clamp(min=torch.finfo(torch.float32).tiny)

    def anchor_penalty(model: PreTrainedModel, batch: dict) -> torch.Tensor:
        weight_matrix = word_embeddings(model).weight
        rows = weight_matrix[index.to(weight_matrix.device)].float()
        return (rows - start.to(rows.device)).pow(2).sum() / scale.to(rows.device)

    return LossTerm("anchor_penalty", anchor_penalty, weight=weight, batches=_no_batch)
