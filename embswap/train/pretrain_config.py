"""The choices of a step-1 run (:class:`PretrainConfig`): model size, vocabulary, schedule, evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..architectures import MODEL_DIMS, get_family
from ..errors import DataError, EmbswapError

# Model sizes by name. ``tiny`` is the demo's body (docs/results.md#demo; 5.3M parameters with an 8k vocabulary).
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024},
    "small": {"num_hidden_layers": 6, "hidden_size": 512, "num_attention_heads": 8, "intermediate_size": 2048},
    "base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
}

VOCAB_MODES = ("joint", "disjoint")


def resolve_preset(preset: str | Mapping[str, int]) -> tuple[str, dict[str, int]]:
    """(name, sizes) of a preset name or of a mapping that gives every one of MODEL_DIMS."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise EmbswapError(f"unknown preset {preset!r}; expected one of: {', '.join(PRESETS)}")
        return preset, dict(PRESETS[preset])
    dims = dict(preset)
    missing = [key for key in MODEL_DIMS if key not in dims]
    extra = sorted(set(dims) - set(MODEL_DIMS))
    if missing or extra:
        raise EmbswapError(
            f"a custom preset needs exactly {', '.join(MODEL_DIMS)}; "
            f"missing {missing or 'none'}, unknown {extra or 'none'}"
        )
    if dims["hidden_size"] % dims["num_attention_heads"]:
        raise EmbswapError(
            f"hidden_size {dims['hidden_size']} is not a multiple of num_attention_heads {dims['num_attention_heads']}"
        )
    return "custom", {key: int(dims[key]) for key in MODEL_DIMS}


@dataclass
class PretrainConfig:
    """Every choice of a pretraining run (recorded in the body's provenance and checked on resume).

    ``preset`` is a name of :data:`PRESETS` or a mapping giving every one of ``MODEL_DIMS``; ``vocab``
    is ``"joint"`` (one tokenizer for every language) or ``"disjoint"`` (one per language, one table).
    ``vocab_size`` and ``tokenizer_model`` shape the tokenizers the run trains when none is given.
    ``max_positions`` (None: ``seq_len``) is how long an input the body reads; rows past ``seq_len``
    are never trained. ``eval_fraction`` of each language's texts is held out for the MLM loss.
    ``max_positions`` and ``warmup_steps`` None are fitted when the run starts (:meth:`resolved`).
    """

    family: str = "bert"
    preset: str | Mapping[str, int] = "tiny"
    vocab_size: int = 8000
    tokenizer_model: str | None = None
    vocab: str = "joint"
    max_steps: int = 2000
    max_minutes: float | None = None
    seq_len: int = 128
    batch_size: int = 32
    lr: float = 5e-4
    warmup_steps: int | None = None
    weight_decay: float = 0.01
    seed: int = 0
    device: str | None = None
    eval_fraction: float = 0.02
    eval_batches: int = 10
    eval_every: int | None = None
    checkpoint_every: int | None = 500
    log_every: int = 10
    max_positions: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        get_family(self.family)
        resolve_preset(self.preset)
        if self.vocab not in VOCAB_MODES:
            raise EmbswapError(f"unknown vocabulary mode {self.vocab!r}; expected one of: {', '.join(VOCAB_MODES)}")
        if not 0 <= self.eval_fraction < 1:
            raise DataError(f"eval_fraction {self.eval_fraction} must be in [0, 1)")
        if self.max_positions is not None and self.max_positions < self.seq_len:
            raise DataError(
                f"max_positions {self.max_positions} is shorter than seq_len {self.seq_len}; "
                f"give at least {self.seq_len}"
            )

    @property
    def dims(self) -> dict[str, int]:
        return resolve_preset(self.preset)[1]

    @property
    def preset_name(self) -> str:
        return resolve_preset(self.preset)[0]

    def resolved(self) -> PretrainConfig:
        """This config with the family's own name, ``max_positions`` and ``warmup_steps`` filled in."""
        return replace(
            self,
            family=get_family(self.family).name,
            max_positions=self.max_positions or self.seq_len,
            warmup_steps=min(500, self.max_steps // 10) if self.warmup_steps is None else self.warmup_steps,
        )
