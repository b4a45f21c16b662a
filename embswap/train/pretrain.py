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

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForMaskedLM, PreTrainedModel

from ..architectures import get_family, new_config, special_token_ids
from ..artifacts import Body, LanguagePack, load_tokenizer
from ..digests import texts_sha256, vocab_sha256
from ..errors import DataError, EmbswapError, IncompatibleArtifactError
from ..names import check_name
from ..outputs import STORE, check_output
from ..split import split_model
from ..store import Store
from .checkpoint import checkpoint_dir_for, copy_run_files, save_tokenizer
from .loop import LoopConfig, TrainResult, derive_seed, make_accelerator, train
from .mlm import MLMBatches, build_sequences, mean_mlm_loss, mlm_loss, tokenize_texts
from .pretrain_config import PRESETS, VOCAB_MODES, PretrainConfig, resolve_preset  # noqa: F401  (their old home)
from .tokenizer import train_tokenizer
from .vocab_table import MixedBatches, VocabTable, _remap

logger = logging.getLogger(__name__)

TOKENIZERS_SUBDIR = "tokenizers"
JOINT_TOKENIZER = "_joint"


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
            save_tokenizer(train_tokenizer(texts, vocab_size, family=family, model=tokenizer_model), target)
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
        "sha256": texts_sha256(train_texts),
    }
    return batches, held_out, info


def _status(enabled: bool, message: str) -> None:
    """A step the progress bar does not show (``enabled``: the caller wants progress)."""
    if enabled:
        logger.info(message)


def _check_languages(texts_by_lang: Mapping[str, Sequence[str]]) -> list[str]:
    if not texts_by_lang:
        raise DataError("no language given; pass texts for at least one language")
    for lang in texts_by_lang:
        check_name(lang, "language code")  # it names the pack's folder in the store
    return list(texts_by_lang)


def pretrain(texts_by_lang: Mapping[str, Sequence[str]], output_store, config: PretrainConfig, **options) -> Store:
    """Step 1: pretrain a body and one pack per language into ``output_store``; see :func:`run_pretrain`."""
    return run_pretrain(texts_by_lang, output_store, config, **options).store


def run_pretrain(
    texts_by_lang: Mapping[str, Sequence[str]],
    output_store,
    config: PretrainConfig,
    *,
    tokenizer=None,
    resume: bool = False,
    overwrite: bool = False,
    data_description: object = None,
) -> PretrainOutcome:
    """Pretrain a masked LM from scratch on ``texts_by_lang`` ({language: texts}) as ``config`` says and
    write the store.

    ``tokenizer``: None (train one of ``config.vocab_size`` per language, or one joint one), a tokenizer or
    its folder (used for every language; joint only when there are several), or {language: tokenizer}.
    Checkpoints live in ``STORE/.body.checkpoint``; ``resume`` continues from the last one and ends
    bit-identical to an uninterrupted run. The JSONL log and PNG curve are copied into ``STORE/body``.
    A store that already has a body is refused unless ``resume`` or ``overwrite``.
    """
    languages = _check_languages(texts_by_lang)
    cfg = config.resolved()
    dims = cfg.dims
    if cfg.batch_size < len(languages):
        raise DataError(f"batch size {cfg.batch_size} cannot hold one sequence of each of {len(languages)} languages")
    store = Store(output_store)
    if store.body_path.exists() and not (resume or overwrite):
        raise EmbswapError(
            f"store {store.path} already has a body; pass resume=True (--resume) to continue its run, "
            "overwrite=True (--overwrite) to replace it (packs and tasks trained for it stop composing), "
            "or write another store"
        )
    for path, kind in (
        (store.path, STORE),
        (store.body_path, "body"),
        *((store.pack_path(lang), "language_pack") for lang in languages),
    ):
        check_output(path, kind)  # before training: never a folder of other files or of another kind
    checkpoint_dir = checkpoint_dir_for(store.body_path)

    splits = {lang: _split_eval(texts_by_lang[lang], cfg.eval_fraction, cfg.seed, lang) for lang in languages}
    train_texts = {lang: split[0] for lang, split in splits.items()}
    accelerator = make_accelerator(cfg.device)
    tokenizers = _given_tokenizers(tokenizer, languages, cfg.vocab)
    if tokenizers is None:
        tokenizers = _prepare_tokenizers(
            train_texts,
            cfg.vocab,
            family=cfg.family,
            vocab_size=cfg.vocab_size,
            tokenizer_model=cfg.tokenizer_model,
            folder=checkpoint_dir / TOKENIZERS_SUBDIR,
            reuse=resume,
            accelerator=accelerator,
            progress=cfg.progress and accelerator.is_main_process,
        )
    special_ids = _shared_special_ids(tokenizers, languages, cfg.family)
    table = VocabTable.build(tokenizers, cfg.vocab, special_ids)

    _status(cfg.progress, f"tokenizing {', '.join(f'{len(train_texts[lang]):,} {lang}' for lang in languages)} lines")
    sources, eval_sets, data = {}, {}, {}
    n = len(languages)
    shares = [cfg.batch_size // n + (i < cfg.batch_size % n) for i in range(n)]
    for lang, share in zip(languages, shares):
        sources[lang], held_out, data[lang] = _language_data(
            tokenizers[lang],
            train_texts[lang],
            splits[lang][1],
            share=share,
            seq_len=cfg.seq_len,
            seed=cfg.seed,
            label=lang,
        )
        if held_out is not None:
            fixed = MLMBatches(
                held_out, tokenizers[lang], batch_size=cfg.batch_size, seed=cfg.seed, label=f"eval-{lang}"
            )
            eval_sets[lang] = [_remap(b, table, lang) for b in fixed.fixed_batches(cfg.eval_batches)]
    batches = MixedBatches(sources, table, pad_id=special_ids["pad"])

    torch.manual_seed(derive_seed(cfg.seed, "pretrain-init"))
    model_config = new_config(cfg.family, dims, table.size, special_ids, max_positions=cfg.max_positions)
    model = AutoModelForMaskedLM.from_config(model_config)
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
        "family": cfg.family,
        "dims": dims,
        "vocab": cfg.vocab,
        "languages": languages,
        "vocab_sha256": {lang: vocab_sha256(tok) for lang, tok in tokenizers.items()},
        "data_sha256": {lang: info["sha256"] for lang, info in data.items()},
        "seq_len": cfg.seq_len,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "eval_fraction": cfg.eval_fraction,
        "max_positions": cfg.max_positions,
    }
    loop_config = LoopConfig.of_run(
        cfg,
        warmup_steps=cfg.warmup_steps,
        description=f"pretrain {','.join(languages)}",
        weight_decay=cfg.weight_decay,
        eval_every=cfg.eval_every,
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

    provenance = _provenance(cfg, languages, table, result, {**data, "source": data_description})
    body, _ = split_model(model, tokenizers[languages[0]], languages[0], provenance=provenance)
    packs = {lang: _pack_for(lang, model, table, body, provenance) for lang in languages}
    if accelerator.is_main_process:
        store.save_body(body)
        for pack in packs.values():
            store.save_pack(pack)
        copy_run_files(checkpoint_dir, store.body_path)
    accelerator.wait_for_everyone()
    return PretrainOutcome(store=store, body=body, packs=packs, model=model, table=table, result=result)


def _shared_special_ids(tokenizers: dict[str, object], languages: list[str], family: str) -> dict[str, int]:
    """The special-token ids every language's tokenizer gives alike (refused when they differ)."""
    fam = get_family(family)
    special_ids = special_token_ids(tokenizers[languages[0]], fam)
    for lang, tok in tokenizers.items():
        if special_token_ids(tok, fam) != special_ids:
            raise IncompatibleArtifactError(
                f"the {lang!r} tokenizer gives the special tokens ids {special_token_ids(tok, fam)}, the "
                f"{languages[0]!r} one {special_ids}; every language must share them"
            )
    return special_ids


def _provenance(cfg: PretrainConfig, languages: list[str], table: VocabTable, result: TrainResult, data: dict) -> dict:
    """The body's provenance: the resolved config and what the run did."""
    train_losses = [r["loss"] for r in result.history if "loss" in r]
    return {
        "stage": "pretrain",
        "baseline": _baseline_name(languages, cfg.vocab),
        "family": cfg.family,
        "preset": cfg.preset_name,
        "dims": cfg.dims,
        "languages": languages,
        "vocab": table.describe(),
        "sampling": "every batch holds batch_size/n sequences of each language" if len(languages) > 1 else None,
        **result.summary(),
        "seed": cfg.seed,
        "lr": cfg.lr,
        "warmup_steps": cfg.warmup_steps,
        "weight_decay": cfg.weight_decay,
        "batch_size": cfg.batch_size,
        "seq_len": cfg.seq_len,
        "max_positions": cfg.max_positions,
        "num_processes": result.num_processes,
        "data": data,
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
