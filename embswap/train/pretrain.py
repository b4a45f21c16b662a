"""Step 1: pretrain a masked LM from scratch, on one language (MonoTrans) or several (joint baselines).

One language: train (or take) a tokenizer, build a random model of a preset size, MLM-train every
weight, split it into ``STORE/body`` and ``STORE/packs/<lang>``.

Several languages train one model on all of them (JointPair for two, JointMulti for more):

- ``vocab="joint"``: one tokenizer trained on every language's text; each language's pack holds
  that tokenizer and the whole matrix (identical packs under different names).
- ``vocab="disjoint"``: one tokenizer per language, all rows in one table during training (shared
  special tokens first, then each language's block; see :class:`VocabTable`); each language's pack
  is its tokenizer with its rows and output-bias entries.

Every training batch mixes the languages in equal shares (``batch_size / n`` sequences each,
whatever the corpus sizes: smaller corpora are simply seen more often). The run is the shared
resumable loop (:mod:`embswap.train.loop`) with the masked-only-logits loss of
:mod:`embswap.train.mlm`, so baselines and MonoTrans bodies are trained the same way and still
compose and evaluate exactly like any other store.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForMaskedLM, PreTrainedModel

from ..architectures import MODEL_DIMS, get_family, new_config, special_token_ids
from ..artifacts import Body, LanguagePack, load_tokenizer
from ..errors import DataError, EmbswapError, IncompatibleArtifactError
from ..io import atomic_folder
from ..names import check_name
from ..outputs import STORE, check_output
from ..split import split_model
from ..store import Store
from .loop import CURVE_NAME, LOG_NAME, LoopConfig, TrainResult, derive_seed, make_accelerator, train
from .mlm import IGNORE_INDEX, MLMBatches, build_sequences, mean_mlm_loss, mlm_loss, tokenize_texts
from .tokenizer import train_tokenizer
from .transfer import checkpoint_dir_for

# Model sizes by name. ``tiny`` is the demo's body (docs/results.md#demo; 5.3M parameters with an 8k vocabulary).
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024},
    "small": {"num_hidden_layers": 6, "hidden_size": 512, "num_attention_heads": 8, "intermediate_size": 2048},
    "base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
}

TOKENIZERS_SUBDIR = "tokenizers"
JOINT_TOKENIZER = "_joint"

VOCAB_MODES = ("joint", "disjoint")


# ---------------------------------------------------------------------------------------------
# Where each language's tokens live in the one table a multi-language run trains. Disjoint: the
# shared special tokens (ids 0..k-1 in every tokenizer) keep rows 0..k-1 and language L's ordinary
# tokens follow in a block of their own, so a pack (specials, then its block, in its tokenizer's id
# order) is exactly what a single-language run of that tokenizer would hold.


def special_prefix(tokenizer, special_ids: dict[str, int]) -> list[str]:
    """The token strings of ids 0..k-1, where k is one past the highest special id."""
    return tokenizer.convert_ids_to_tokens(list(range(max(special_ids.values()) + 1)))


@dataclass
class VocabTable:
    """Token ids of each language's tokenizer -> rows of the shared table, and back to packs."""

    mode: str
    tokenizers: dict[str, object]  # language -> transformers tokenizer
    num_special: int
    starts: dict[str, int]  # language -> table row of its first ordinary token
    size: int

    @classmethod
    def build(cls, tokenizers: dict[str, object], mode: str, special_ids: dict[str, int]) -> VocabTable:
        """Lay out the table; every tokenizer must give the shared special tokens the same ids."""
        if mode not in VOCAB_MODES:
            raise IncompatibleArtifactError(
                f"unknown vocabulary mode {mode!r}; expected one of: {', '.join(VOCAB_MODES)}"
            )
        num_special = max(special_ids.values()) + 1
        languages = list(tokenizers)
        if mode == "joint":
            first = tokenizers[languages[0]]
            if any(tok is not first for tok in tokenizers.values()):
                raise IncompatibleArtifactError("a joint vocabulary needs one tokenizer shared by every language")
            return cls(mode, dict(tokenizers), num_special, {lang: num_special for lang in languages}, len(first))
        reference = special_prefix(tokenizers[languages[0]], special_ids)
        starts, next_row = {}, num_special
        for lang, tok in tokenizers.items():
            if special_prefix(tok, special_ids) != reference:
                raise IncompatibleArtifactError(
                    f"the {lang!r} tokenizer's first {num_special} tokens are {special_prefix(tok, special_ids)}, "
                    f"expected the shared special tokens {reference}; train every tokenizer with the same family"
                )
            starts[lang] = next_row
            next_row += len(tok) - num_special
        return cls(mode, dict(tokenizers), num_special, starts, next_row)

    @property
    def languages(self) -> list[str]:
        return list(self.tokenizers)

    def to_table(self, language: str, ids: torch.Tensor) -> torch.Tensor:
        """Map a language's token ids to table rows (specials stay, ordinary tokens shift)."""
        shift = self.starts[language] - self.num_special
        if shift == 0:
            return ids
        return torch.where(ids >= self.num_special, ids + shift, ids)

    def rows(self, language: str) -> torch.Tensor:
        """Table rows of the language's tokens, in its tokenizer's id order."""
        ordinary = len(self.tokenizers[language]) - self.num_special
        start = self.starts[language]
        return torch.cat([torch.arange(self.num_special), torch.arange(start, start + ordinary)])

    def describe(self) -> dict:
        """What provenance records about the layout."""
        return {
            "mode": self.mode,
            "table_rows": self.size,
            "shared_special_rows": self.num_special,
            "languages": {
                lang: {"vocab_size": len(tok), "first_row": self.starts[lang]} for lang, tok in self.tokenizers.items()
            },
        }


# ---------------------------------------------------------------------------------------------
# Model size, data and tokenizers.


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
class PretrainOutcome:
    store: Store
    body: Body
    packs: dict[str, LanguagePack]
    model: PreTrainedModel  # the trained model over the whole table, on the CPU, in eval mode
    table: VocabTable
    result: TrainResult


class _MLMObjective(nn.Module):
    """What the loop trains: the masked LM scored at its masked positions only."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return {"loss": mlm_loss(self.model, batch)}


def _pad_to(tensor: torch.Tensor, width: int, value: int) -> torch.Tensor:
    if tensor.shape[1] == width:
        return tensor
    pad = torch.full((tensor.shape[0], width - tensor.shape[1]), value, dtype=tensor.dtype)
    return torch.cat([tensor, pad], dim=1)


def _remap(batch: dict[str, torch.Tensor], table: VocabTable, language: str) -> dict[str, torch.Tensor]:
    """A language's batch in table rows (labels too; the ignore index stays)."""
    return {
        **batch,
        "input_ids": table.to_table(language, batch["input_ids"]),
        "labels": table.to_table(language, batch["labels"]),
    }


class MixedBatches:
    """Each step's batch: ``batch_size / n`` sequences of every language, masked with that language's
    own vocabulary (random replacements never come from another language), in table rows.

    A pure function of (seed, step) like :class:`MLMBatches`, so resuming is exact.
    """

    def __init__(self, sources: dict[str, MLMBatches], table: VocabTable, pad_id: int):
        self.sources = sources
        self.table = table
        self.pad_id = pad_id

    def __call__(self, step: int, process_index: int = 0, num_processes: int = 1) -> dict[str, torch.Tensor]:
        parts = [
            _remap(source(step, process_index, num_processes), self.table, lang)
            for lang, source in self.sources.items()
        ]
        if len(parts) == 1:
            return parts[0]
        width = max(part["input_ids"].shape[1] for part in parts)
        fill = {"input_ids": self.pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        return {key: torch.cat([_pad_to(part[key], width, value) for part in parts]) for key, value in fill.items()}


def _split_eval(texts: Sequence[str], fraction: float, seed: int, language: str) -> tuple[list[str], list[str]]:
    """(train, held-out) texts: a seeded random ``fraction`` of the non-empty texts is held out."""
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise DataError(f"language {language!r} has no text; give UTF-8 files with one sentence or document per line")
    if fraction <= 0 or len(texts) < 2:
        return texts, []
    n_eval = min(len(texts) - 1, max(1, int(len(texts) * fraction)))
    generator = torch.Generator().manual_seed(derive_seed(seed, "eval-split", language))
    held = set(torch.randperm(len(texts), generator=generator)[:n_eval].tolist())
    return [t for i, t in enumerate(texts) if i not in held], [t for i, t in enumerate(texts) if i in held]


def _sha256_texts(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _sha256_vocab(tokenizer) -> str:
    items = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256("\n".join(token for token, _ in items).encode("utf-8")).hexdigest()


def _as_tokenizer(value):
    return load_tokenizer(Path(value)) if isinstance(value, (str, os.PathLike)) else value


def _given_tokenizers(tokenizer, languages: list[str], mode: str) -> dict[str, object] | None:
    """Language -> tokenizer from the ``tokenizer`` argument (None: train them)."""
    if tokenizer is None:
        return None
    if isinstance(tokenizer, Mapping):
        missing = [lang for lang in languages if lang not in tokenizer]
        if missing:
            raise DataError(f"no tokenizer given for {', '.join(missing)}; give one per language or none")
        tokenizers = {lang: _as_tokenizer(tokenizer[lang]) for lang in languages}
        if mode == "joint" and len({id(t) for t in tokenizers.values()}) > 1:
            raise IncompatibleArtifactError("vocab='joint' reads every language with one tokenizer; give a single one")
        return tokenizers
    if mode == "disjoint" and len(languages) > 1:
        raise IncompatibleArtifactError(
            "vocab='disjoint' needs one tokenizer per language (no shared subwords); give a dict language -> "
            "tokenizer, or let pretrain train them, or use vocab='joint'"
        )
    shared = _as_tokenizer(tokenizer)
    return {lang: shared for lang in languages}


def _save_tokenizer(tokenizer, folder: Path) -> None:
    with atomic_folder(folder) as tmp:
        tokenizer.save_pretrained(str(tmp))


def _prepare_tokenizers(
    train_texts: dict[str, list[str]],
    mode: str,
    *,
    family: str,
    vocab_size: int,
    tokenizer_model: str | None,
    folder: Path,
    reuse: bool,
    accelerator,
    progress: bool,
) -> dict[str, object]:
    """Train the run's tokenizers once (main process), keep them beside the checkpoint, load them.

    A resumed run reuses the saved ones, so it never depends on tokenizer training being repeatable.
    """
    names = [JOINT_TOKENIZER] if mode == "joint" else list(train_texts)
    if accelerator.is_main_process:
        for name in names:
            target = folder / name
            if reuse and (target / "tokenizer.json").is_file():
                continue
            _status(
                progress,
                f"training a {vocab_size:,}-token tokenizer for {'all languages' if name == JOINT_TOKENIZER else name}",
            )
            texts = (
                [t for lang in train_texts for t in train_texts[lang]] if name == JOINT_TOKENIZER else train_texts[name]
            )
            _save_tokenizer(train_tokenizer(texts, vocab_size, family=family, model=tokenizer_model), target)
    accelerator.wait_for_everyone()
    loaded = {name: load_tokenizer(folder / name) for name in names}
    if mode == "joint":
        return {lang: loaded[JOINT_TOKENIZER] for lang in train_texts}
    return loaded


def _language_data(tokenizer, train_texts, held_out_texts, *, share: int, seq_len: int, seed: int, label: str):
    """(batches of ``share`` sequences a step, held-out sequences or None, what provenance records)."""
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    token_lists = tokenize_texts(tokenizer, train_texts)
    sequences = build_sequences(token_lists, seq_len, cls_id=cls_id, sep_id=sep_id)
    batches = MLMBatches(sequences, tokenizer, batch_size=share, seed=seed, label=f"pretrain-{label}")
    held_out = None
    if held_out_texts:
        held_out = (
            build_sequences(tokenize_texts(tokenizer, held_out_texts), seq_len, cls_id=cls_id, sep_id=sep_id) or None
        )
    info = {
        "texts": len(train_texts),
        "eval_texts": len(held_out_texts),
        "tokens": sum(len(ids) for ids in token_lists),
        "sequences": len(sequences),
        "sha256": _sha256_texts(train_texts),
    }
    return batches, held_out, info


def _status(enabled: bool, message: str) -> None:
    if enabled:
        import sys

        from rich.console import Console

        from ..outputs import tolerate_closed

        Console(file=tolerate_closed(sys.stderr)).print(message)  # a closed stderr must not stop the run


def _check_languages(texts_by_lang: Mapping[str, Sequence[str]]) -> list[str]:
    if not texts_by_lang:
        raise DataError("no language given; pass texts for at least one language")
    for lang in texts_by_lang:
        check_name(lang, "language code")  # it names the pack's folder in the store
    return list(texts_by_lang)


def pretrain(texts_by_lang: Mapping[str, Sequence[str]], output_store, **kwargs) -> Store:
    """Step 1: pretrain a body and one pack per language into ``output_store``; see :func:`run_pretrain`."""
    return run_pretrain(texts_by_lang, output_store, **kwargs).store


def run_pretrain(
    texts_by_lang: Mapping[str, Sequence[str]],
    output_store,
    *,
    family: str = "bert",
    preset: str | Mapping[str, int] = "tiny",
    vocab_size: int = 8000,
    tokenizer=None,
    tokenizer_model: str | None = None,
    vocab: str = "joint",
    max_steps: int = 2000,
    max_minutes: float | None = None,
    seq_len: int = 128,
    batch_size: int = 32,
    lr: float = 5e-4,
    warmup_steps: int | None = None,
    weight_decay: float = 0.01,
    seed: int = 0,
    resume: bool = False,
    device: str | None = None,
    eval_fraction: float = 0.02,
    eval_batches: int = 10,
    eval_every: int | None = None,
    checkpoint_every: int | None = 500,
    log_every: int = 10,
    max_positions: int | None = None,
    overwrite: bool = False,
    data_description: object = None,
    progress: bool = True,
) -> PretrainOutcome:
    """Pretrain a masked LM from scratch on ``texts_by_lang`` ({language: texts}) and write the store.

    ``tokenizer``: None (train one of ``vocab_size`` per language, or one joint one), a tokenizer or
    its folder (used for every language; joint only when there are several), or {language: tokenizer}.
    Checkpoints live in ``STORE/.body.checkpoint``; ``resume`` continues from the last one and ends
    bit-identical to an uninterrupted run. The JSONL log and PNG curve are copied into ``STORE/body``.
    ``max_positions`` (default ``seq_len``) is how long an input the body reads; rows past ``seq_len``
    are never trained. A store that already has a body is refused unless ``resume`` or ``overwrite``.
    """
    languages = _check_languages(texts_by_lang)
    fam = get_family(family)
    preset_name, dims = resolve_preset(preset)
    if vocab not in VOCAB_MODES:
        raise EmbswapError(f"unknown vocabulary mode {vocab!r}; expected one of: {', '.join(VOCAB_MODES)}")
    if batch_size < len(languages):
        raise DataError(f"batch size {batch_size} cannot hold one sequence of each of {len(languages)} languages")
    if not 0 <= eval_fraction < 1:
        raise DataError(f"eval_fraction {eval_fraction} must be in [0, 1)")
    if max_positions is not None and max_positions < seq_len:
        raise DataError(f"max_positions {max_positions} is shorter than seq_len {seq_len}; give at least {seq_len}")
    store = Store(output_store)
    if store.body_path.exists() and not (resume or overwrite):
        raise EmbswapError(
            f"store {store.path} already has a body; pass resume=True (--resume) to continue its run, "
            "overwrite=True (--overwrite) to replace it (packs and tasks trained for it stop composing), "
            "or write another store"
        )
    for path, kind in ((store.path, STORE), (store.body_path, "body"), *((store.pack_path(lang), "language_pack")
                                                                       for lang in languages)):
        check_output(path, kind)  # before training: never a folder of other files or of another kind
    checkpoint_dir = checkpoint_dir_for(store.body_path)

    splits = {lang: _split_eval(texts_by_lang[lang], eval_fraction, seed, lang) for lang in languages}
    train_texts = {lang: split[0] for lang, split in splits.items()}
    accelerator = make_accelerator(device)
    tokenizers = _given_tokenizers(tokenizer, languages, vocab)
    if tokenizers is None:
        tokenizers = _prepare_tokenizers(
            train_texts,
            vocab,
            family=fam.name,
            vocab_size=vocab_size,
            tokenizer_model=tokenizer_model,
            folder=checkpoint_dir / TOKENIZERS_SUBDIR,
            reuse=resume,
            accelerator=accelerator,
            progress=progress and accelerator.is_main_process,
        )
    special_ids = special_token_ids(tokenizers[languages[0]], fam)
    for lang, tok in tokenizers.items():
        if special_token_ids(tok, fam) != special_ids:
            raise IncompatibleArtifactError(
                f"the {lang!r} tokenizer gives the special tokens ids {special_token_ids(tok, fam)}, the "
                f"{languages[0]!r} one {special_ids}; every language must share them"
            )
    table = VocabTable.build(tokenizers, vocab, special_ids)

    _status(progress, f"tokenizing {', '.join(f'{len(train_texts[lang]):,} {lang}' for lang in languages)} lines")
    sources, eval_sets, data = {}, {}, {}
    shares = [batch_size // len(languages) + (i < batch_size % len(languages)) for i in range(len(languages))]
    for lang, share in zip(languages, shares):
        sources[lang], held_out, data[lang] = _language_data(
            tokenizers[lang], train_texts[lang], splits[lang][1], share=share, seq_len=seq_len, seed=seed, label=lang
        )
        if held_out is not None:
            fixed = MLMBatches(held_out, tokenizers[lang], batch_size=batch_size, seed=seed, label=f"eval-{lang}")
            eval_sets[lang] = [_remap(b, table, lang) for b in fixed.fixed_batches(eval_batches)]
    batches = MixedBatches(sources, table, pad_id=special_ids["pad"])

    torch.manual_seed(derive_seed(seed, "pretrain-init"))
    config = new_config(fam.name, dims, table.size, special_ids, max_positions=max_positions or seq_len)
    model = AutoModelForMaskedLM.from_config(config)
    trainable = dict(model.named_parameters())  # tied output weights appear once

    def eval_fn() -> dict[str, float]:
        device_ = model.get_input_embeddings().weight.device
        losses = {lang: mean_mlm_loss(model, sets, device=device_) for lang, sets in eval_sets.items()}
        metrics = {"mlm_loss": sum(losses.values()) / len(losses)}
        if len(losses) > 1:
            metrics.update({f"mlm_loss_{lang}": value for lang, value in losses.items()})
        return metrics

    settings = {
        "stage": "pretrain",
        "family": fam.name,
        "dims": dims,
        "vocab": vocab,
        "languages": languages,
        "vocab_sha256": {lang: _sha256_vocab(tok) for lang, tok in tokenizers.items()},
        "data_sha256": {lang: info["sha256"] for lang, info in data.items()},
        "seq_len": seq_len,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "eval_fraction": eval_fraction,
        "max_positions": max_positions or seq_len,
    }
    loop_config = LoopConfig(
        max_steps=max_steps,
        lr=lr,
        warmup_steps=min(500, max_steps // 10) if warmup_steps is None else warmup_steps,
        weight_decay=weight_decay,
        seed=seed,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        eval_every=eval_every,
        max_minutes=max_minutes,
        device=device,
        progress=progress,
        description=f"pretrain {','.join(languages)}",
    )
    result = train(
        _MLMObjective(model),
        trainable,
        batches,
        loop_config,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        eval_fn=eval_fn if eval_sets else None,
        optimizer_factory=_decay_matrices_only,
        settings=settings,
        accelerator=accelerator,
    )
    model.to("cpu").eval()

    train_losses = [r["loss"] for r in result.history if "loss" in r]
    provenance = {
        "stage": "pretrain",
        "baseline": _baseline_name(languages, vocab),
        "family": fam.name,
        "preset": preset_name,
        "dims": dims,
        "languages": languages,
        "vocab": table.describe(),
        "sampling": "every batch holds batch_size/n sequences of each language" if len(languages) > 1 else None,
        "steps": result.step,
        "tokens_seen": result.tokens_seen,
        "minutes": round(result.elapsed_seconds / 60, 3),
        "stopped_by": result.stopped_by,
        "seed": seed,
        "lr": lr,
        "warmup_steps": loop_config.warmup_steps,
        "weight_decay": weight_decay,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "max_positions": max_positions or seq_len,
        "num_processes": result.num_processes,
        "data": {**data, "source": data_description},
        "mlm_loss": {
            "train_first": train_losses[0] if train_losses else None,
            "train_final": result.train_loss,
            "eval_initial": result.first_metric("eval_mlm_loss"),
            "eval_final": result.last_metric("eval_mlm_loss"),
            **(
                {f"eval_final_{lang}": result.last_metric(f"eval_mlm_loss_{lang}") for lang in languages}
                if len(languages) > 1
                else {}
            ),
        },
    }
    body, _ = split_model(model, tokenizers[languages[0]], languages[0], provenance=provenance)
    packs = {lang: _pack_for(lang, model, table, body, provenance) for lang in languages}
    if accelerator.is_main_process:
        store.save_body(body)
        for pack in packs.values():
            store.save_pack(pack)
        for name in (LOG_NAME, CURVE_NAME):
            if (checkpoint_dir / name).is_file():
                shutil.copyfile(checkpoint_dir / name, store.body_path / name)
    accelerator.wait_for_everyone()
    return PretrainOutcome(store=store, body=body, packs=packs, model=model, table=table, result=result)


def _baseline_name(languages: list[str], vocab: str) -> str:
    if len(languages) == 1:
        return "monolingual"
    return f"{'JointPair' if len(languages) == 2 else 'JointMulti'}-{vocab}"


def _pack_for(language: str, model: PreTrainedModel, table: VocabTable, body: Body, provenance: dict) -> LanguagePack:
    """The language's tokenizer with its rows of the trained table and of the output bias."""
    rows = table.rows(language)
    bias = model.get_output_embeddings().bias
    return LanguagePack(
        language=language,
        tokenizer=table.tokenizers[language],
        word_embeddings=model.get_input_embeddings().weight.detach()[rows].clone(),
        output_bias=bias.detach()[rows].clone(),
        body_fingerprint=body.fingerprint,
        provenance={
            "init": "pretrain",
            "trained": "with the body",
            "stage": "pretrain",
            "baseline": provenance["baseline"],
            "vocab": table.mode,
            "languages": provenance["languages"],
            "table_first_row": table.starts[language],
            "steps": provenance["steps"],
            "seed": provenance["seed"],
        },
    )


def _decay_matrices_only(params: list[nn.Parameter], config: LoopConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only: biases and LayerNorm scales are not shrunk (as BERT)."""
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)
