"""The choices of a step-3 run (:class:`FinetuneConfig`) and the rates picked from the body when none is given."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..architectures import resolve_seq_len
from ..artifacts import Body
from ..choices import FINETUNE_MODES
from ..errors import DataError
from ..tasks.data import SUPERVISED_TASKS

MODES = FINETUNE_MODES
# Default rates (when no lr is given; :func:`default_lr` picks one from the body). A body from
# `embswap pretrain` is small and briefly trained: it fine-tunes at the demo's rate (embswap/demo/monotrans.py,
# which learned the genre task in tests/train/test_transfer_quality.py); at BERT's 2e-5 its classifier
# underfits. Bodies pretrained at scale elsewhere keep BERT's 2e-5.
EMBSWAP_BODY_LR = 1e-3
EMBSWAP_BODY_HIDDEN = 256  # widest embswap body the rate was measured on (the tiny preset)
PRETRAINED_BODY_LR = 2e-5


@dataclass
class FinetuneConfig:
    """Every choice of a fine-tuning run (recorded in the task module and checked on resume).

    ``lr`` and ``seq_len`` None are picked from the body when the run starts (:func:`default_lr`,
    :func:`embswap.architectures.resolve_seq_len`).
    """

    task: str
    mode: str = "full"
    noise: float = 0.0
    epochs: float = 2.0
    lr: float | None = None
    batch_size: int = 32
    seq_len: int | None = None
    seed: int = 0
    max_steps: int | None = None
    max_minutes: float | None = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    checkpoint_every: int | None = 500
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.task not in SUPERVISED_TASKS:
            raise DataError(f"cannot fine-tune task type {self.task!r}; expected one of: {', '.join(SUPERVISED_TASKS)}")
        if self.mode not in MODES:
            raise DataError(f"unknown mode {self.mode!r}; expected one of: {', '.join(MODES)}")
        if self.noise < 0:
            raise DataError(f"noise is a standard deviation, got {self.noise}; give 0 or more (the paper: 0.075)")
        if self.batch_size < 1 or (self.seq_len is not None and self.seq_len < 8):
            raise DataError(f"batch size {self.batch_size} and seq_len {self.seq_len} must be >= 1 and >= 8")
        if self.epochs <= 0 and self.max_steps is None:
            raise DataError(f"epochs is {self.epochs}; give a positive number of epochs or --max-steps")
        if self.lr is not None and not self.lr > 0:
            raise DataError(f"lr is {self.lr}; give a positive learning rate (or leave it out: picked from the body)")


def default_lr(body: Body) -> tuple[float, str]:
    """The fine-tuning rate for ``body`` when none is given, and why (recorded as ``lr_source``).

    A body ``embswap pretrain`` made (its provenance says so) gets :data:`EMBSWAP_BODY_LR`, scaled
    down as 1/width above :data:`EMBSWAP_BODY_HIDDEN` (Adam's usual width rule); any other body
    :data:`PRETRAINED_BODY_LR`.
    """
    config = body.model_config
    hidden = config.get("hidden_size") or config.get("dim")
    layers = config.get("num_hidden_layers") or config.get("n_layers")
    size = f"hidden {hidden}, {layers} layers"
    if (body.provenance or {}).get("stage") == "pretrain" and isinstance(hidden, int):
        lr = EMBSWAP_BODY_LR * min(1.0, EMBSWAP_BODY_HIDDEN / hidden)
        return lr, f"default for a body pretrained by embswap ({size})"
    return PRETRAINED_BODY_LR, f"default for a pretrained body ({size})"


def resolve_config(body: Body, config: FinetuneConfig) -> tuple[FinetuneConfig, dict]:
    """``config`` with ``lr`` and ``seq_len`` fitted to ``body`` where None, and where each came from."""
    seq_len, seq_len_source = resolve_seq_len(body.model_config, config.seq_len)
    lr, lr_source = (config.lr, "given") if config.lr is not None else default_lr(body)
    return replace(config, lr=lr, seq_len=seq_len), {"lr_source": lr_source, "seq_len_source": seq_len_source}
