"""The choices of a step-2 run (:class:`TransferConfig`) and the measured defaults for those left None."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from ..architectures import resolve_seq_len
from ..errors import EmbswapError
from .anchors import anchor_penalty_weight, check_anchors, resolve_anchors

# Compute precision of step 2: "bf16" autocasts the forward pass (about 1.5x faster on CPUs with
# bfloat16 instructions; see benchmarks/transfer_speed.py); the pack is still trained in float32.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}

# The learning rate after each init when parallel text is given, measured on all-MiniLM-L6-v2
# (benchmarks/results/encoder_transfer.md): an aligned init starts near its final accuracy and 5e-3 pulls
# it down in the first minute while 1e-3 improves it; the other inits start far away and need 5e-3.
ALIGN_LR = {"aligned": 1e-3}
ALIGN_LR_OTHER = 5e-3
MLM_LR = 1e-3  # the MLM-only default, unchanged


@dataclass
class TransferConfig:
    """Every choice of a step-2 run (recorded in the pack's provenance and checked on resume).

    ``init`` is one of :data:`embswap.init.INIT_METHODS`; ``objective`` names registered loss builders
    joined by ``+`` and ``objective_options`` is what they read (``parallel``: the sentence pairs of the
    align objective and of init aligned). ``pos`` adds position embeddings and ``adapters`` a Houlsby
    language adapter to what trains. ``anchors`` says how the rows an init copied from the reference
    pack train (:mod:`embswap.train.anchors`). Training stops at ``max_steps`` (which also sets the
    learning-rate schedule) or after ``max_minutes``; ``schedule="constant"`` keeps the rate after
    warm-up, so a run resumed with a higher ``max_steps`` continues as one long run would.
    ``precision="bf16"`` runs the forward pass under bfloat16 autocast (the pack stays float32).

    ``init``, ``lr``, ``seq_len`` and ``anchor_penalty`` None and ``anchors="auto"`` are picked when the
    run starts (:func:`resolve_config`).
    """

    language: str
    init: str | None = None
    objective: str = "mlm"
    objective_options: dict = field(default_factory=dict)
    pos: bool = False
    adapters: bool = False
    anchors: str = "auto"
    anchor_penalty: float | None = None
    max_steps: int = 1000
    max_minutes: float | None = None
    seq_len: int | None = None
    batch_size: int = 32
    lr: float | None = None
    warmup_steps: int | None = None
    schedule: str = "linear"
    seed: int = 0
    packing: str = "pack"
    precision: str = "fp32"
    dictionary_limit: int | None = None
    eval_batches: int = 20
    checkpoint_every: int | None = 500
    log_every: int = 10
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        self.objective_options = dict(self.objective_options or {})
        if self.precision not in PRECISIONS:
            raise EmbswapError(f"unknown precision {self.precision!r}; expected one of: {', '.join(PRECISIONS)}")
        check_anchors(self.anchors)

    @property
    def parallel(self) -> list[dict] | None:
        """The sentence pairs the objective options give (None or empty: no parallel text)."""
        return self.objective_options.get("parallel")

    @property
    def objective_names(self) -> list[str]:
        return [part.strip() for part in self.objective.split("+") if part.strip()]


def eflomal_available() -> bool:
    return importlib.util.find_spec("eflomal") is not None


def default_recipe(
    init: str | None, lr: float | None, *, parallel: bool, reference: bool, log: Callable[[str], None] | None = None
) -> dict:
    """``{"init", "init_source", "lr", "lr_source"}``: what was given, else the measured default.

    With parallel text, the init defaults to ``aligned`` where eflomal is installed (else ``subword-mean``,
    said through ``log``; ``random`` without a reference pack to copy rows from) and the rate follows the
    init (:data:`ALIGN_LR`). Without parallel text: ``random`` and :data:`MLM_LR`, as before.
    """
    init_source = "given"
    if init is None:
        if not parallel:
            init, init_source = "random", "default (no parallel text)"
        elif not reference:
            init, init_source = "random", "default (parallel text, no reference pack to copy rows from)"
        elif eflomal_available():
            init, init_source = "aligned", "default (parallel text, eflomal installed)"
        else:
            init, init_source = "subword-mean", "default (parallel text; eflomal missing)"
            note = 'init: subword-mean, not aligned: eflomal is not installed (pip install "embswap[align]")'
            (log or logging.getLogger(__name__).warning)(note)
    lr_source = "given"
    if lr is None:
        if parallel:
            lr = ALIGN_LR.get(init, ALIGN_LR_OTHER)
            lr_source = f"default after init {init} with parallel text"
        else:
            lr, lr_source = MLM_LR, "default (no parallel text)"
    return {"init": init, "init_source": init_source, "lr": float(lr), "lr_source": lr_source}


def resolve_config(
    body, config: TransferConfig, *, reference: bool, log: Callable[[str], None] | None = None
) -> tuple[TransferConfig, dict]:
    """``config`` with every None / "auto" choice fitted to ``body`` and the data, and where
    ``init``, ``lr`` and ``seq_len`` came from (``{"init_source", "lr_source", "seq_len_source"}``)."""
    recipe = default_recipe(config.init, config.lr, parallel=bool(config.parallel), reference=reference, log=log)
    anchors = resolve_anchors(config.anchors, recipe["init"])
    penalty = anchor_penalty_weight(anchors, config.anchor_penalty)
    seq_len, seq_len_source = resolve_seq_len(body.model_config, config.seq_len)
    resolved = replace(
        config, init=recipe["init"], lr=recipe["lr"], anchors=anchors, anchor_penalty=penalty, seq_len=seq_len
    )
    sources = {"init_source": recipe["init_source"], "lr_source": recipe["lr_source"], "seq_len_source": seq_len_source}
    return resolved, sources
