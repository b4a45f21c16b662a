"""Step 2: learn a new language pack on a frozen body.

The model is composed from the body and a freshly initialised pack; every body tensor is frozen
(``requires_grad=False``) and only the pack trains: word embeddings and MLM output bias, plus the
position table with ``pos=True`` and a Houlsby language adapter with ``adapters=True``.

What the pack learns from is a list of weighted loss terms ``(model, batch) -> loss``. ``mlm`` is
the paper's objective; another objective registers a builder with :func:`register_objective` and
is then named in ``objective`` ("align", "mlm+align") without touching the loop or this module.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from .. import adapters_support
from ..architectures import max_input_tokens, output_layer, position_embeddings, word_embeddings
from ..artifacts import Body, LanguagePack, check_compatible
from ..compose import LANGUAGE_ADAPTER, as_artifact, training_model
from ..digests import texts_sha256, vocab_sha256
from ..errors import DataError, IncompatibleArtifactError, TrainingError
from ..init import InitResult, initialize_embeddings
from ..outputs import check_output
from . import align as _align  # noqa: F401  (importing it registers the align objective)
from .anchors import anchor_penalty_term, freeze_rows
from .checkpoint import TOKENIZER_SUBDIR, checkpoint_dir_for, copy_run_files, save_tokenizer
from .loop import (
    LoopConfig,
    TrainResult,
    derive_seed,
    make_accelerator,
    process_state,
    train,
)
from .mlm import MLMBatches, build_sequences, mean_mlm_loss, tokenize_texts
from .objectives import LossTerm, ObjectiveContext, build_loss_terms, objective_names, register_objective  # noqa: F401
from .transfer_config import PRECISIONS, TransferConfig, resolve_config


class ObjectiveModule(nn.Module):
    """What the loop trains: the composed model and the weighted sum of the loss terms.

    ``autocast_dtype`` (e.g. bfloat16) runs the loss terms under autocast; the trained tensors,
    their gradients and the optimizer stay in float32.
    """

    def __init__(self, model: PreTrainedModel, terms: Sequence[LossTerm], autocast_dtype: torch.dtype | None = None):
        super().__init__()
        self.model = model
        self.terms = list(terms)
        self.autocast_dtype = autocast_dtype

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        total, parts = None, {}
        device_type = word_embeddings(self.model).weight.device.type
        with torch.autocast(device_type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            for term in self.terms:
                value = term.loss(self.model, batch[term.name] if term.batches is not None else batch["text"])
                parts[f"{term.name}_loss"] = value.detach()
                weighted = term.weight * value
                total = weighted if total is None else total + weighted
        return {"loss": total, **(parts if len(parts) > 1 else {})}


class _CombinedBatches:
    def __init__(self, text: MLMBatches | None, terms: Sequence[LossTerm]):
        self.text = text if any(t.batches is None for t in terms) else None
        self.own = [t for t in terms if t.batches is not None]

    def __call__(self, step: int, process_index: int = 0, num_processes: int = 1) -> dict:
        batch = {} if self.text is None else {"text": self.text(step, process_index, num_processes)}
        for term in self.own:
            batch[term.name] = term.batches(step, process_index, num_processes)
        return batch


@dataclass
class TransferOutcome:
    pack: LanguagePack
    model: PreTrainedModel  # the live training model (pack tensors trained, body tensors untouched)
    result: TrainResult
    init: InitResult


def saved_tokenizer(output: str | os.PathLike):
    """The tokenizer an interrupted run into ``output`` trained with, or None."""
    from ..artifacts import load_tokenizer

    folder = checkpoint_dir_for(output) / TOKENIZER_SUBDIR
    return load_tokenizer(folder) if (folder / "tokenizer.json").is_file() else None


def tokenizer_for_run(
    output: str | os.PathLike, train_new: Callable[[], object], *, resume: bool = False, device: str | None = None
):
    """The tokenizer of a run into ``output``: the saved one when resuming, else a new one.

    Tokenizer training is not deterministic (ties), so with several processes only the main one
    trains; it saves the result beside the checkpoints and the others load that.
    """
    if resume and (saved := saved_tokenizer(output)) is not None:
        return saved
    state = process_state(device)
    if state.num_processes == 1:
        return train_new()
    folder = checkpoint_dir_for(output) / TOKENIZER_SUBDIR
    with state.main_process_first():
        if state.is_main_process:
            tokenizer = train_new()
            save_tokenizer(tokenizer, folder)
            return tokenizer
    from ..artifacts import load_tokenizer

    return load_tokenizer(folder)


def check_tokenizer(body: Body, tokenizer) -> None:
    ids = {role: getattr(tokenizer, f"{role}_token_id", None) for role in body.special_tokens}
    if ids != body.special_tokens:
        raise IncompatibleArtifactError(
            f"the tokenizer's special-token ids {ids} differ from the body's {body.special_tokens}; train it with "
            "`embswap tokenizer train --body STORE/body ...` so the shared tokens keep their ids"
        )


def _trainable_tensors(model: PreTrainedModel, *, pos: bool, adapter_names: Sequence[str]) -> dict[str, nn.Parameter]:
    for param in model.parameters():
        param.requires_grad_(False)
    trainable = {"word_embeddings": word_embeddings(model).weight}
    out = output_layer(model)
    if out is not None and out.bias is not None:
        trainable["output_bias"] = out.bias
    if pos:
        table = position_embeddings(model)
        if table is None:
            raise IncompatibleArtifactError("--pos needs a body with a learned position table; this family has none")
        trainable["position_embeddings"] = table.weight
    params = dict(model.named_parameters())
    for name in adapter_names:
        trainable[f"adapter.{name}"] = params[name]
    for param in trainable.values():
        param.requires_grad_(True)
    return trainable


def _transfer_optimizer(params: list[nn.Parameter], config: LoopConfig) -> torch.optim.Optimizer:
    """AdamW as one fused kernel where torch has one (CPU, CUDA): the same update in one pass over
    the state, which matters for large vocabularies (7x faster than the per-tensor loop at 32k x 768)."""
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused or None)


def _held_out_mlm(model, tokenizer, texts, seq_len, batch_size, seed, packing, max_batches):
    """An eval hook: mean MLM loss on held-out text, with masks fixed once so values compare."""
    sequences = build_sequences(
        tokenize_texts(tokenizer, texts),
        seq_len,
        cls_id=tokenizer.cls_token_id,
        sep_id=tokenizer.sep_token_id,
        mode=packing,
    )
    if not sequences:
        return None
    fixed = MLMBatches(sequences, tokenizer, batch_size=batch_size, seed=seed, label="eval").fixed_batches(max_batches)

    def held_out_loss() -> dict[str, float]:
        return {"mlm_loss": mean_mlm_loss(model, fixed, device=word_embeddings(model).weight.device)}

    return held_out_loss


def transfer(body, tokenizer, texts: Sequence[str], config: TransferConfig, **options) -> LanguagePack:
    """Step 2: learn a pack for ``tokenizer``'s language on the frozen ``body``; see :func:`run_transfer`."""
    return run_transfer(body, tokenizer, texts, config, **options).pack


def run_transfer(
    body,
    tokenizer,
    texts: Sequence[str],
    config: TransferConfig,
    *,
    output: str | os.PathLike | None,
    reference_pack=None,
    dictionary=None,
    resume: bool = False,
    eval_texts: Sequence[str] | None = None,
    extra_loss: LossTerm | Sequence[LossTerm] | None = None,
    special_rows=None,
    data_description: object = None,
    recipe_log: Callable[[str], None] | None = None,
) -> TransferOutcome:
    """Train a new language pack as ``config`` says and save it to ``output`` (atomically; None: do not save).

    Every init but random needs ``reference_pack``; dictionary needs ``dictionary``, a ``{word:
    [translations]}`` dict or TSV path; aligned word-aligns the pairs of ``config.objective_options
    ["parallel"]``, the same pairs the align objective reads. ``extra_loss`` adds loss terms to the
    objective's; ``special_rows`` ({id: row}) sets special rows instead of the reference's.
    ``config``'s None choices are fitted when the run starts (:func:`embswap.train.transfer_config.resolve_config`:
    ``seq_len`` 128 cut to what the body reads, ``init`` and ``lr`` the measured defaults, aligned and 1e-3
    when parallel text is given); the pack records each and where it came from (``init_source``,
    ``lr_source``, ``seq_len_source``). Checkpoints go to a hidden sibling of ``output``
    (:func:`embswap.train.checkpoint.checkpoint_dir_for`); ``resume`` continues from the last one and
    ends bit-identical to an uninterrupted run. The pack's provenance records the init counts, steps,
    tokens, data, seed, lr and MLM losses. ``output`` may be missing, empty or an earlier pack
    (``outputs.check_output``), checked before training.
    """
    if output is not None:
        check_output(output, "language_pack", inputs=(body, reference_pack))
    body = as_artifact(body, Body)
    reference = as_artifact(reference_pack, LanguagePack) if reference_pack is not None else None
    if reference is not None:
        check_compatible(body, reference, name=f"reference pack {reference.language!r}")
    cfg, sources = resolve_config(body, config, reference=reference is not None, log=recipe_log)
    options = cfg.objective_options
    if cfg.init == "aligned" and cfg.parallel:
        from .align import validate_pairs

        # before word alignment: a bad pair fails in one line naming it, not inside eflomal
        validate_pairs(cfg.parallel, options.get("parallel_description", "parallel data"))
    check_tokenizer(body, tokenizer)
    if output is None and resume:
        raise TrainingError("resume needs the output folder of the interrupted run; pass output")
    align_length = options.get("align_max_length")
    limit = max_input_tokens(body.model_config)
    if align_length is not None and limit is not None and int(align_length) > limit:
        raise DataError(
            f"align_max_length {align_length} is longer than the body's {limit} positions; give {limit} or less"
        )

    texts = [t for t in texts if t and t.strip()]
    token_lists = tokenize_texts(tokenizer, texts)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    sequences = build_sequences(token_lists, cfg.seq_len, cls_id=cls_id, sep_id=sep_id, mode=cfg.packing)
    if not sequences and "mlm" in cfg.objective_names:
        raise DataError("no text to train on: give UTF-8 text files with one sentence or document per line")
    text_batches = None
    if sequences:  # objectives with their own data (e.g. align alone) may train without plain text
        text_batches = MLMBatches(
            sequences, tokenizer, batch_size=cfg.batch_size, seed=cfg.seed, group_by_length=cfg.packing == "group"
        )

    frequencies = None
    if cfg.init == "dictionary" and cfg.dictionary_limit is not None:
        frequencies = {}
        for ids in token_lists:
            for token_id in ids:
                frequencies[token_id] = frequencies.get(token_id, 0) + 1
    start = initialize_embeddings(
        body,
        tokenizer,
        cfg.init,
        reference_pack=reference,
        dictionary=dictionary,
        special_rows=special_rows,
        seed=cfg.seed,
        dictionary_limit=cfg.dictionary_limit,
        token_frequencies=frequencies,
        parallel=cfg.parallel if cfg.init == "aligned" else None,
    )
    pack0 = LanguagePack(
        language=cfg.language,
        tokenizer=tokenizer,
        word_embeddings=start.word_embeddings,
        body_fingerprint=body.fingerprint,
        output_bias=start.output_bias,
    )
    model = training_model(body, pack0, train_positions=cfg.pos)  # the frozen tensors are the body's, not copies
    adapter_names: list[str] = []
    adapter_config = None
    if cfg.adapters:
        adapter_config = adapters_support.houlsby_config()
        torch.manual_seed(derive_seed(cfg.seed, "adapter"))
        adapter_names = adapters_support.add_adapter(model, LANGUAGE_ADAPTER, adapter_config)
        model.set_active_adapters(LANGUAGE_ADAPTER)
    trainable = _trainable_tensors(model, pos=cfg.pos, adapter_names=adapter_names)

    context = ObjectiveContext(
        body=body,
        tokenizer=tokenizer,
        reference_pack=reference,
        text_batches=text_batches,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        seq_len=cfg.seq_len,
        options=dict(options),
        max_steps=cfg.max_steps,
        progress=cfg.progress,
    )
    terms = build_loss_terms(cfg.objective, context)
    if extra_loss is not None:
        terms += [extra_loss] if isinstance(extra_loss, LossTerm) else list(extra_loss)
    if cfg.anchors == "penalty":
        terms.append(anchor_penalty_term(start.word_embeddings, start.anchored, cfg.anchor_penalty))
    if text_batches is None and any(term.batches is None for term in terms):
        raise DataError("no text to train on: give UTF-8 text files with one sentence or document per line")
    module = ObjectiveModule(model, terms, autocast_dtype=PRECISIONS[cfg.precision])

    eval_fn = None
    if eval_texts and body.head == "mlm":
        eval_fn = _held_out_mlm(
            model, tokenizer, eval_texts, cfg.seq_len, cfg.batch_size, cfg.seed, cfg.packing, cfg.eval_batches
        )
    data_sha256 = texts_sha256(texts)
    accelerator = make_accelerator(cfg.device)
    # Without an output (benchmarks, experiments) checkpoints go to a temporary folder.
    ckpt = checkpoint_dir_for(output) if output is not None else Path(tempfile.mkdtemp(prefix="embswap-transfer-"))
    if accelerator.is_main_process:
        if not resume or not (ckpt / TOKENIZER_SUBDIR).is_dir():
            ckpt.mkdir(parents=True, exist_ok=True)
            save_tokenizer(tokenizer, ckpt / TOKENIZER_SUBDIR)
    handles = freeze_rows(trainable, start.anchored) if cfg.anchors == "frozen" else []
    try:
        result = train(
            module,
            trainable,
            _CombinedBatches(text_batches, terms),
            _loop_config(cfg),
            checkpoint_dir=ckpt,
            resume=resume,
            eval_fn=eval_fn,
            settings=_resume_settings(cfg, reference, vocab_sha256(tokenizer), data_sha256),
            accelerator=accelerator,
            optimizer_factory=_transfer_optimizer,
        )
    finally:
        for handle in handles:
            handle.remove()
    model.eval()

    data = {
        "texts": len(texts),
        "tokens": sum(len(ids) for ids in token_lists),
        "sequences": len(sequences),
        "sha256": data_sha256,
        "source": data_description,
    }
    provenance = _provenance(cfg, sources, start, reference, terms, result, data)
    table = position_embeddings(model) if cfg.pos else None
    pack = LanguagePack(
        language=cfg.language,
        tokenizer=tokenizer,
        word_embeddings=trainable["word_embeddings"].detach().cpu().clone(),
        body_fingerprint=body.fingerprint,
        output_bias=trainable["output_bias"].detach().cpu().clone() if "output_bias" in trainable else None,
        position_embeddings=table.weight.detach().cpu().clone() if table is not None else None,
        adapter_config=adapter_config,
        adapter_tensors=(
            {k: v.cpu() for k, v in adapters_support.extract(model, LANGUAGE_ADAPTER).items()} if cfg.adapters else None
        ),
        provenance=provenance,
    )
    if output is not None and accelerator.is_main_process:
        pack.save_pretrained(output)
        copy_run_files(ckpt, Path(output))
    accelerator.wait_for_everyone()
    if output is None and accelerator.is_main_process:
        shutil.rmtree(ckpt, ignore_errors=True)
    return TransferOutcome(pack=pack, model=model, result=result, init=start)


def _loop_config(cfg: TransferConfig) -> LoopConfig:
    warmup = min(100, cfg.max_steps // 10) if cfg.warmup_steps is None else cfg.warmup_steps
    return LoopConfig.of_run(cfg, warmup_steps=warmup, description=f"transfer {cfg.language}", schedule=cfg.schedule)


def _resume_settings(cfg: TransferConfig, reference: LanguagePack | None, vocab: str, data: str) -> dict:
    """What a resumed run must share with the interrupted one (``cfg`` resolved)."""
    settings = {
        "stage": "transfer",
        "language": cfg.language,
        "vocab_sha256": vocab,
        "data_sha256": data,
        "init": cfg.init,
        "anchors": cfg.anchors,
        "pos": cfg.pos,
        "adapters": cfg.adapters,
        "objective": cfg.objective,
        "seq_len": cfg.seq_len,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "packing": cfg.packing,
        "reference_pack": reference.body_fingerprint + ":" + reference.language if reference is not None else None,
    }
    if cfg.schedule != "linear":  # only then: checkpoints of earlier versions stay resumable
        settings["schedule"] = cfg.schedule
    if cfg.precision != "fp32":  # only then: checkpoints of earlier versions stay resumable
        settings["precision"] = cfg.precision
    if cfg.anchor_penalty is not None:
        settings["anchor_penalty"] = cfg.anchor_penalty
    return settings


def _provenance(
    cfg: TransferConfig,
    sources: dict,
    start: InitResult,
    reference: LanguagePack | None,
    terms: Sequence[LossTerm],
    result: TrainResult,
    data: dict,
) -> dict:
    """The pack's provenance: the resolved config, where its defaults came from, what the run did."""
    return {
        "stage": "transfer",
        "init": {**start.provenance(), "reference_pack": reference.language if reference is not None else None},
        "objective": cfg.objective,
        "loss_terms": {term.name: term.weight for term in terms},
        "anchors": cfg.anchors,
        **({"anchor_penalty": cfg.anchor_penalty} if cfg.anchor_penalty is not None else {}),
        "pos": cfg.pos,
        "adapters": cfg.adapters,
        **result.summary(),
        "seed": cfg.seed,
        "lr": cfg.lr,
        "lr_source": sources["lr_source"],
        "init_source": sources["init_source"],
        "batch_size": cfg.batch_size,
        "seq_len": cfg.seq_len,
        "seq_len_source": sources["seq_len_source"],
        "packing": cfg.packing,
        **({"precision": cfg.precision} if cfg.precision != "fp32" else {}),
        **({"schedule": cfg.schedule} if cfg.schedule != "linear" else {}),
        "num_processes": result.num_processes,
        "data": data,
        "mlm_loss": {
            "train_final": result.train_loss,
            "eval_initial": result.first_metric("eval_mlm_loss"),
            "eval_final": result.last_metric("eval_mlm_loss"),
        },
    }
