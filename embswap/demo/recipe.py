"""The MonoTrans recipe's defaults, in one place: the demo (``DemoConfig`` in monotrans.py) and the
quality benchmarks (``Budget`` in benchmarks/_variants.py) both read them, so the recipe a benchmark
measures is the one the demo runs.

Budgets are steps, so a run learns the same amount on a busy or a quiet machine; the minutes are only
safety caps (about 2x what a quiet 2-core CPU needs).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..train.align import DEFAULT_ALIGN_WEIGHT


@dataclass(frozen=True)
class Recipe:
    """Model size, sequence lengths, step budgets and learning rates of steps 1-3 (full size)."""

    preset: str = "tiny"
    vocab_size: int = 8000
    mlm_seq_len: int = 64  # short MLM sequences: more steps per minute on a CPU
    seq_len: int = 128  # task examples (two verses) and alignment sentences
    batch_size: int = 32
    pretrain_steps: int = 1400  # also the length of the learning-rate schedule
    pretrain_minutes: float = 20.0
    pretrain_lr: float = 1e-3
    transfer_steps: int = 150
    transfer_minutes: float = 4.0
    transfer_lr: float = 2e-3
    transfer_warmup: int = 10  # runs are short: a long warm-up would spend them at a low rate
    align_weight: float = DEFAULT_ALIGN_WEIGHT
    finetune_steps: int = 200
    finetune_minutes: float = 8.0
    finetune_lr: float = 1e-3  # the rate that learned the task in tests/train/test_transfer_quality.py
    eval_examples: int = 1000
    english_translations: tuple[str, ...] = ("4", "2")
    # English re-learned (self-transfer, swap-robust packs) reads other translations than the body did.
    relearn_translations: tuple[str, ...] = ("3", "2")
    # A quick run reads at most this many lines of text, parallel pairs and task training rows.
    quick_max_lines: int = 4000
    quick_max_pairs: int = 3000
    quick_max_train_rows: int = 400


MONOTRANS = Recipe()
