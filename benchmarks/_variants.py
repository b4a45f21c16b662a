"""What the quality benchmarks vary, and how each variant's artifacts are named.

A :class:`Variant` names every choice of step 2 (objective, init, anchors, +pos, +adapters), of
step 3 (noise, swap-robust packs), the seed, and which body it reads. An artifact is named after the
part of the variant that decides it -- a pack after the step-2 choices (``de~mlm+align~overlap~s0``),
a task after the step-3 ones (``genre~noise0.075~s0``) -- so variants that share a pack or a task
share the artifact. A :class:`Budget` is the model size and what each stage may spend.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

from embswap.demo import DemoConfig
from embswap.demo.recipe import MONOTRANS
from embswap.errors import EmbswapError

OBJECTIVES = ("mlm", "mlm+align", "align")
INITS = ("random", "overlap", "dictionary", "subword-mean", "aligned")
ANCHORS = ("free", "frozen", "penalty")
BODIES = ("mono", "pair-joint", "pair-disjoint", "multi")
PAPER_NOISE = 0.075  # the paper's +noise standard deviation
SELF = "en-relearned"  # English re-learned by the variant's step 2 from random rows: the self-transfer pack
ROBUST = "en-robust"  # English re-learned (embswap.train.robust) for swap-robust fine-tuning
TASK_TYPES = {"genre": "classification", "paraphrase": "pair-classification"}
RELEARN_TRANSLATIONS = MONOTRANS.relearn_translations  # the re-learned English packs read other translations
# Fine-tuning per task, relative to the budget's task steps and rate. Paraphrase (is the second verse
# the same verse in another translation?) compares two sentences and needs more, gentler steps than
# genre: English paraphrase accuracy on the demo body (800 test pairs) was 74.8 % after 200 steps at
# lr 1e-3, 63.3 % at 1e-4, 81.9 % after 400 at 3e-4. On the reproduction's body 200 steps at 1e-3 never
# left chance (loss flat at 0.70), which put every MonoTrans paraphrase cell at 50.0; 400 at 3e-4: 83.4 %.
TASK_RECIPES = {"genre": {"steps": 1.0, "lr": None}, "paraphrase": {"steps": 2.0, "lr": 3e-4}}

# --------------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Budget:
    """Model size and what each stage may spend. Steps are the budget (the same learning on a busy or
    a quiet machine, as in the demo); minutes are only safety caps. The defaults are the demo's recipe
    (embswap/demo/recipe.py)."""

    preset: str | tuple = MONOTRANS.preset  # a preset name, or sorted (key, value) pairs of BERT dimensions
    vocab_size: int = MONOTRANS.vocab_size
    mlm_seq_len: int = MONOTRANS.mlm_seq_len
    seq_len: int = MONOTRANS.seq_len
    batch_size: int = MONOTRANS.batch_size
    pretrain_steps: int = MONOTRANS.pretrain_steps
    pretrain_minutes: float = MONOTRANS.pretrain_minutes
    pretrain_lr: float = MONOTRANS.pretrain_lr
    pack_steps: int = MONOTRANS.transfer_steps
    pack_minutes: float = MONOTRANS.transfer_minutes
    transfer_lr: float = MONOTRANS.transfer_lr
    transfer_warmup: int = MONOTRANS.transfer_warmup
    align_weight: float = MONOTRANS.align_weight
    task_steps: int = MONOTRANS.finetune_steps
    task_minutes: float = MONOTRANS.finetune_minutes
    finetune_lr: float = MONOTRANS.finetune_lr
    eval_examples: int = MONOTRANS.eval_examples
    english_translations: tuple = MONOTRANS.english_translations
    max_lines: int | None = None  # quick runs read fewer lines of text, pairs and task rows
    max_pairs: int | None = None
    max_train_rows: int | None = None

    @classmethod
    def from_demo(cls, config: DemoConfig, **overrides) -> Budget:
        """The demo's recipe and budgets (``DemoConfig`` or its ``quick_config``), with overrides."""
        preset = config.preset if isinstance(config.preset, str) else tuple(sorted(config.preset.items()))
        values = dict(
            preset=preset,
            vocab_size=config.vocab_size,
            mlm_seq_len=config.mlm_seq_len,
            seq_len=config.seq_len,
            batch_size=config.batch_size,
            pretrain_steps=config.pretrain_steps,
            pretrain_minutes=config.pretrain_minutes,
            pretrain_lr=config.pretrain_lr,
            pack_steps=config.transfer_steps,
            pack_minutes=config.transfer_minutes,
            transfer_lr=config.transfer_lr,
            transfer_warmup=config.transfer_warmup,
            align_weight=config.align_weight,
            task_steps=config.finetune_steps,
            task_minutes=config.finetune_minutes,
            finetune_lr=config.finetune_lr,
            eval_examples=config.eval_examples,
            english_translations=tuple(config.english_translations),
            max_lines=MONOTRANS.quick_max_lines if config.quick else None,
            max_pairs=MONOTRANS.quick_max_pairs if config.quick else None,
            max_train_rows=MONOTRANS.quick_max_train_rows if config.quick else None,
        )
        return cls(**{**values, **overrides})

    def scaled(self, factor: float) -> Budget:
        """Every step budget (and its minute cap) times ``factor`` (``--scale`` on a bigger machine)."""
        if factor == 1:
            return self
        steps = {
            name: max(1, round(getattr(self, name) * factor)) for name in ("pretrain_steps", "pack_steps", "task_steps")
        }
        caps = {name: getattr(self, name) * factor for name in ("pretrain_minutes", "pack_minutes", "task_minutes")}
        return replace(self, **steps, **caps)

    @property
    def preset_arg(self) -> str | dict:
        return self.preset if isinstance(self.preset, str) else dict(self.preset)

    @property
    def tokens_per_step(self) -> int:
        """MLM tokens of one pretraining or transfer step (equal compute is counted in these)."""
        return self.batch_size * self.mlm_seq_len

    def describe(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def digest(self, body_source: str) -> str:
        text = json.dumps([self.describe(), body_source], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


# --------------------------------------------------------------------------------- variants and names


@dataclass(frozen=True)
class Variant:
    """One recipe: what steps 2 and 3 do, the seed, and which body it reads."""

    system: str = "MonoTrans (paper-literal)"
    objective: str = "mlm"  # step 2: mlm | mlm+align | align
    init: str = "random"  # random | overlap | dictionary | subword-mean
    dictionary_size: int | None = None  # N most frequent words looked up (init dictionary)
    anchors: str = "free"  # rows set from the English pack: free | frozen | penalty
    pos: bool = False  # +pos: the pack learns position embeddings
    adapters: bool = False  # +adapters: the pack learns a language adapter
    noise: float = 0.0  # +noise: std of Gaussian noise on the embeddings in fine-tuning
    robust_packs: int = 0  # fine-tuning alternates the English pack with K re-learned ones
    seed: int = 0
    body: str = "mono"  # mono (MonoTrans) | pair-joint | pair-disjoint (JointPair) | multi (JointMulti)

    def __post_init__(self) -> None:
        for field_name, value, allowed in (
            ("objective", self.objective, OBJECTIVES),
            ("init", self.init, INITS),
            ("anchors", self.anchors, ANCHORS),
            ("body", self.body, BODIES),
        ):
            if value not in allowed:
                raise EmbswapError(
                    f"variant {self.system!r}: {field_name} {value!r} is not one of {', '.join(allowed)}"
                )
        if (self.init == "dictionary") != (self.dictionary_size is not None):
            raise EmbswapError(f"variant {self.system!r}: init dictionary and dictionary_size go together")
        recipe = (self.objective, self.init, self.anchors, self.pos, self.adapters, self.noise, self.robust_packs)
        if self.body != "mono" and recipe != ("mlm", "random", "free", False, False, 0.0, 0):
            raise EmbswapError(f"variant {self.system!r}: a joint body has no step 2 and takes no step-3 options")

    @property
    def uses_parallel_text(self) -> bool:
        return "align" in self.objective or self.init == "aligned"  # aligned init word-aligns parallel text

    def with_seed(self, seed: int) -> Variant:
        return replace(self, seed=seed)


def self_transfer_variant(variant: Variant) -> Variant:
    """The step 2 that re-learns English for the self-transfer diagnostic: the variant's objective and
    pack options from random rows. Any init from the English pack would copy its rows (an English word
    list is the identity) and make the diagnostic pass trivially; the demo does the same."""
    return replace(variant, init="random", dictionary_size=None, anchors="free")


def init_tag(variant: Variant) -> str:
    return f"dict{variant.dictionary_size}" if variant.init == "dictionary" else variant.init


def pack_key(variant: Variant, language: str, dictionary_digest: str | None = None) -> str:
    """Store name of the pack ``variant`` learns for ``language``: decided by its step-2 choices only.

    A dictionary init also names the word list's ``dictionary_digest``, so a changed list (another
    pivot, another FreeDict release) learns a new pack instead of reusing one built from the old list.
    """
    if variant.body != "mono":
        return language  # a joint body's own pack, in that body's store
    if language == SELF:
        variant = self_transfer_variant(variant)
    if variant.init == "dictionary" and not dictionary_digest:
        raise EmbswapError(f"variant {variant.system!r}: a dictionary pack's name needs the word list's digest")
    tag = f"{init_tag(variant)}-{dictionary_digest}" if variant.init == "dictionary" else init_tag(variant)
    parts = [language, variant.objective, tag]
    if variant.anchors != "free":
        parts.append(variant.anchors)
    if variant.pos:
        parts.append("pos")
    if variant.adapters:
        parts.append("adapters")
    return "~".join([*parts, f"s{variant.seed}"])


def task_recipe(budget: Budget, task: str) -> tuple[int, float, float]:
    """(steps, minutes cap, learning rate) of fine-tuning ``task`` under ``budget``."""
    recipe = TASK_RECIPES[task]
    steps = max(1, round(budget.task_steps * recipe["steps"]))
    return steps, budget.task_minutes * recipe["steps"], recipe["lr"] or budget.finetune_lr


def task_key(variant: Variant, task: str) -> str:
    """Store name of the task model: decided by the step-3 choices only (+pos/+adapters are pack-side),
    and by the task's recipe where it departs from the budget's (a changed recipe trains a new model)."""
    recipe = TASK_RECIPES[task]
    parts = [task]
    if recipe["steps"] != 1.0:
        parts.append(f"x{recipe['steps']:g}")
    if recipe["lr"]:
        parts.append(f"lr{recipe['lr']:g}")
    if variant.noise:
        parts.append(f"noise{variant.noise:g}")
    if variant.robust_packs:
        parts.append(f"robust{variant.robust_packs}")
    return "~".join([*parts, f"s{variant.seed}"])


def home_language(variant: Variant, language: str | None) -> str | None:
    """The language that picks the variant's store: the L2 of a JointPair body, else None (one store)."""
    return language if variant.body.startswith("pair") else None


def store_id(variant: Variant, language: str | None) -> str:
    """Which store holds the artifacts: "main" (the English body) or a joint body's own."""
    if variant.body == "mono":
        return "main"
    if variant.body == "multi":
        return f"multi~s{variant.seed}"
    return f"{variant.body}-{language}~s{variant.seed}"
