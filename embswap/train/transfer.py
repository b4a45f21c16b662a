"""Step 2: learn a new language pack on a frozen body.

The model is composed from the body and a freshly initialised pack; every body tensor is frozen
(``requires_grad=False``) and only the pack trains: word embeddings and MLM output bias, plus the
position table with ``pos=True`` and a Houlsby language adapter with ``adapters=True``.

What the pack learns from is a list of weighted loss terms ``(model, batch) -> loss``. ``mlm`` is
the paper's objective; another objective registers a builder with :func:`register_objective` and
is then named in ``objective`` ("align", "mlm+align") without touching the loop or this module.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel

from .. import adapters_support
from ..architectures import max_input_tokens, output_layer, position_embeddings, resolve_seq_len, word_embeddings
from ..artifacts import Body, LanguagePack, check_compatible
from ..compose import LANGUAGE_ADAPTER, as_artifact, training_model
from ..errors import DataError, EmbswapError, IncompatibleArtifactError, TrainingError
from ..init import InitResult, initialize_embeddings
from ..io import atomic_folder
from ..outputs import check_output
from .loop import (
    CURVE_NAME,
    LOG_NAME,
    BatchSource,
    LoopConfig,
    TrainResult,
    derive_seed,
    make_accelerator,
    process_state,
    train,
)
from .mlm import MLMBatches, build_sequences, mean_mlm_loss, mlm_loss, tokenize_texts

ANCHOR_MODES = ("auto", "free", "frozen", "penalty")


def resolve_anchors(anchors: str, init: str) -> str:
    """``auto``: frozen for dictionary anchors, free for every other init. The 2-seed ablation
    (benchmarks/results/quality_ablation.md) found frozen dictionary rows ahead of free ones at every
    N (200 / 1000 / 5000, averaged over German, Russian and Hindi); other inits were measured free."""
    if anchors not in ANCHOR_MODES:
        raise EmbswapError(f"unknown anchors mode {anchors!r}; expected one of: {', '.join(ANCHOR_MODES)}")
    if anchors != "auto":
        return anchors
    return "frozen" if init == "dictionary" else "free"
# Weight of the anchor penalty (relative squared drift of the anchored rows, see anchor_penalty_term):
# about ln(vocabulary size) for 8k-32k vocabularies, i.e. the MLM loss at the start of step 2, so that
# anchored rows drifting by their own length cost as much as the whole MLM loss did at step 0.
DEFAULT_ANCHOR_PENALTY = 10.0
# Compute precision of step 2: "bf16" autocasts the forward pass (about 1.5x faster on CPUs with
# bfloat16 instructions; see benchmarks/transfer_speed.py); the pack is still trained in float32.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
TOKENIZER_SUBDIR = "tokenizer"


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
    text_batches: MLMBatches | None
    seed: int
    batch_size: int
    seq_len: int
    options: dict = field(default_factory=dict)
    max_steps: int | None = None  # steps the run will take: data only those steps read need preparing


_OBJECTIVES: dict[str, Callable[[ObjectiveContext], list[LossTerm]]] = {}


def register_objective(name: str, build: Callable[[ObjectiveContext], list[LossTerm]]) -> None:
    """Make ``name`` usable in ``transfer(objective=...)``, alone or joined with ``+``."""
    _OBJECTIVES[name] = build


def objective_names() -> list[str]:
    return sorted(_OBJECTIVES)


def _mlm_terms(context: ObjectiveContext) -> list[LossTerm]:
    if context.body.head != "mlm":
        raise IncompatibleArtifactError(
            "the mlm objective needs a body with an MLM head; this body is head-less (a sentence encoder): "
            "use an alignment objective"
        )
    return [LossTerm("mlm", mlm_loss, weight=float(context.options.get("mlm_weight", 1.0)))]


register_objective("mlm", _mlm_terms)


def build_loss_terms(objective: str, context: ObjectiveContext) -> list[LossTerm]:
    names = [part.strip() for part in objective.split("+") if part.strip()]
    unknown = [n for n in names if n not in _OBJECTIVES]
    if not names or unknown:
        raise EmbswapError(
            f"unknown objective {objective!r}; available: {', '.join(objective_names())} (join several with '+')"
        )
    return [term for name in names for term in _OBJECTIVES[name](context)]


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


def checkpoint_dir_for(output: str | os.PathLike) -> Path:
    """Where a run writing ``output`` keeps its checkpoints: a hidden sibling folder."""
    output = Path(output)
    return output.parent / f".{output.name}.checkpoint"


def saved_tokenizer(output: str | os.PathLike):
    """The tokenizer an interrupted run into ``output`` trained with, or None."""
    from ..artifacts import load_tokenizer

    folder = checkpoint_dir_for(output) / TOKENIZER_SUBDIR
    return load_tokenizer(folder) if (folder / "tokenizer.json").is_file() else None


def tokenizer_for_run(output: str | os.PathLike, train_new: Callable[[], object], *, resume: bool = False,
                      device: str | None = None):
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
            _save_tokenizer(tokenizer, folder)
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


def _texts_sha256(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _vocab_sha256(tokenizer) -> str:
    items = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256("\n".join(token for token, _ in items).encode("utf-8")).hexdigest()


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


def _freeze_rows(trainable: Mapping[str, nn.Parameter], rows: set[int]) -> list:
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


def _held_out_mlm(model, tokenizer, texts, seq_len, batch_size, seed, packing, max_batches):
    """An eval hook: mean MLM loss on held-out text, with masks fixed once so values compare."""
    sequences = build_sequences(
        tokenize_texts(tokenizer, texts), seq_len, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id,
        mode=packing,
    )
    if not sequences:
        return None
    fixed = MLMBatches(sequences, tokenizer, batch_size=batch_size, seed=seed, label="eval").fixed_batches(max_batches)

    def held_out_loss() -> dict[str, float]:
        return {"mlm_loss": mean_mlm_loss(model, fixed, device=word_embeddings(model).weight.device)}

    return held_out_loss


def _save_tokenizer(tokenizer, folder: Path) -> None:
    with atomic_folder(folder) as tmp:
        tokenizer.save_pretrained(str(tmp))


def _anchor_penalty_weight(anchors: str, weight: float | None) -> float | None:
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


# The learning rate after each init when parallel text is given, measured on all-MiniLM-L6-v2
# (benchmarks/results/encoder_transfer.md): an aligned init starts near its final accuracy and 5e-3 pulls
# it down in the first minute while 1e-3 improves it; the other inits start far away and need 5e-3.
ALIGN_LR = {"aligned": 1e-3}
ALIGN_LR_OTHER = 5e-3
MLM_LR = 1e-3  # the MLM-only default, unchanged


def eflomal_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("eflomal") is not None


def default_recipe(init: str | None, lr: float | None, *, parallel: bool, reference: bool,
                   log: Callable[[str], None] | None = None) -> dict:
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


def transfer(body, tokenizer, texts: Sequence[str], **kwargs) -> LanguagePack:
    """Step 2: learn a pack for ``tokenizer``'s language on the frozen ``body``; see :func:`run_transfer`."""
    return run_transfer(body, tokenizer, texts, **kwargs).pack


def run_transfer(
    body,
    tokenizer,
    texts: Sequence[str],
    *,
    language: str,
    output: str | os.PathLike | None,
    init: str | None = None,
    reference_pack=None,
    dictionary=None,
    pos: bool = False,
    adapters: bool = False,
    anchors: str = "auto",
    anchor_penalty: float | None = None,
    max_steps: int = 1000,
    max_minutes: float | None = None,
    seq_len: int | None = None,
    batch_size: int = 32,
    lr: float | None = None,
    seed: int = 0,
    resume: bool = False,
    device: str | None = None,
    eval_texts: Sequence[str] | None = None,
    objective: str = "mlm",
    extra_loss: LossTerm | Sequence[LossTerm] | None = None,
    objective_options: dict | None = None,
    warmup_steps: int | None = None,
    schedule: str = "linear",
    checkpoint_every: int | None = 500,
    log_every: int = 10,
    packing: str = "pack",
    special_rows: Mapping[int, torch.Tensor] | None = None,
    dictionary_limit: int | None = None,
    data_description: object = None,
    eval_batches: int = 20,
    progress: bool = True,
    precision: str = "fp32",
    recipe_log: Callable[[str], None] | None = None,
) -> TransferOutcome:
    """Train a new language pack and save it to ``output`` (atomically; None: do not save).

    ``init`` is one of :data:`embswap.init.INIT_METHODS` (all but random need ``reference_pack``;
    dictionary needs ``dictionary``, a ``{word: [translations]}`` dict or TSV path; aligned word-aligns
    the pairs of ``objective_options["parallel"]``, the same pairs the align objective reads). ``pos`` adds
    position embeddings and ``adapters`` a Houlsby language adapter to what trains; ``anchors=
    "auto"`` (the default) is frozen for init dictionary and free otherwise (:func:`resolve_anchors`);
    ``"frozen"`` keeps the rows set from the reference fixed, ``"penalty"`` lets them train under an
    L2 pull back to their start (:func:`anchor_penalty_term`, weight ``anchor_penalty``, default
    :data:`DEFAULT_ANCHOR_PENALTY`). ``objective`` names registered loss
    builders joined by ``+``; ``extra_loss`` adds loss terms directly. Training stops at
    ``max_steps`` (which also sets the learning-rate schedule) or after ``max_minutes``; ``schedule=
    "constant"`` keeps the rate after warm-up, so a run resumed with a higher ``max_steps``
    continues as one long run would (learning curves at checkpoints). ``seq_len`` None is 128 cut to
    what the body reads (:func:`embswap.architectures.resolve_seq_len`); a longer one is refused.
    Checkpoints go to a hidden sibling of ``output`` (:func:`checkpoint_dir_for`); ``resume``
    continues from the last one and ends bit-identical to an uninterrupted run. The pack's
    provenance records the init counts, steps, tokens, data, seed, lr and MLM losses.
    ``precision="bf16"`` runs the forward pass under bfloat16 autocast (the pack stays float32).
    ``init`` and ``lr`` None take the measured defaults of :func:`default_recipe` (aligned and 1e-3 when
    parallel text is given); the pack records both and where they came from (``init_source``, ``lr_source``).
    ``output`` may be missing, empty or an earlier pack (``outputs.check_output``), checked before training.
    """
    if output is not None:
        check_output(output, "language_pack", inputs=(body, reference_pack))
    body = as_artifact(body, Body)
    reference = as_artifact(reference_pack, LanguagePack) if reference_pack is not None else None
    if reference is not None:
        check_compatible(body, reference, name=f"reference pack {reference.language!r}")
    recipe = default_recipe(init, lr, parallel=bool((objective_options or {}).get("parallel")),
                            reference=reference is not None, log=recipe_log)
    init, lr = recipe["init"], recipe["lr"]
    if init == "aligned" and (objective_options or {}).get("parallel"):
        from .align import validate_pairs

        # before word alignment: a bad pair fails in one line naming it, not inside eflomal
        validate_pairs(objective_options["parallel"], objective_options.get("parallel_description", "parallel data"))
    if precision not in PRECISIONS:
        raise EmbswapError(f"unknown precision {precision!r}; expected one of: {', '.join(PRECISIONS)}")
    anchors = resolve_anchors(anchors, init)
    anchor_penalty = _anchor_penalty_weight(anchors, anchor_penalty)
    check_tokenizer(body, tokenizer)
    if output is None and resume:
        raise TrainingError("resume needs the output folder of the interrupted run; pass output")
    seq_len, seq_len_source = resolve_seq_len(body.model_config, seq_len)
    align_length = (objective_options or {}).get("align_max_length")
    limit = max_input_tokens(body.model_config)
    if align_length is not None and limit is not None and int(align_length) > limit:
        raise DataError(
            f"align_max_length {align_length} is longer than the body's {limit} positions; give {limit} or less"
        )

    texts = [t for t in texts if t and t.strip()]
    token_lists = tokenize_texts(tokenizer, texts)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    sequences = build_sequences(token_lists, seq_len, cls_id=cls_id, sep_id=sep_id, mode=packing)
    if not sequences and "mlm" in (part.strip() for part in objective.split("+")):
        raise DataError("no text to train on: give UTF-8 text files with one sentence or document per line")
    text_batches = None
    if sequences:  # objectives with their own data (e.g. align alone) may train without plain text
        text_batches = MLMBatches(
            sequences, tokenizer, batch_size=batch_size, seed=seed, group_by_length=packing == "group"
        )

    frequencies = None
    if init == "dictionary" and dictionary_limit is not None:
        frequencies = {}
        for ids in token_lists:
            for token_id in ids:
                frequencies[token_id] = frequencies.get(token_id, 0) + 1
    start = initialize_embeddings(
        body,
        tokenizer,
        init,
        reference_pack=reference,
        dictionary=dictionary,
        special_rows=special_rows,
        seed=seed,
        dictionary_limit=dictionary_limit,
        token_frequencies=frequencies,
        parallel=(objective_options or {}).get("parallel") if init == "aligned" else None,
    )
    pack0 = LanguagePack(
        language=language,
        tokenizer=tokenizer,
        word_embeddings=start.word_embeddings,
        body_fingerprint=body.fingerprint,
        output_bias=start.output_bias,
    )
    model = training_model(body, pack0, train_positions=pos)  # the frozen tensors are the body's, not copies
    adapter_names: list[str] = []
    adapter_config = None
    if adapters:
        adapter_config = adapters_support.houlsby_config()
        torch.manual_seed(derive_seed(seed, "adapter"))
        adapter_names = adapters_support.add_adapter(model, LANGUAGE_ADAPTER, adapter_config)
        model.set_active_adapters(LANGUAGE_ADAPTER)
    trainable = _trainable_tensors(model, pos=pos, adapter_names=adapter_names)

    context = ObjectiveContext(
        body=body,
        tokenizer=tokenizer,
        reference_pack=reference,
        text_batches=text_batches,
        seed=seed,
        batch_size=batch_size,
        seq_len=seq_len,
        options=dict(objective_options or {}),
        max_steps=max_steps,
    )
    terms = build_loss_terms(objective, context)
    if extra_loss is not None:
        terms += [extra_loss] if isinstance(extra_loss, LossTerm) else list(extra_loss)
    if anchors == "penalty":
        terms.append(anchor_penalty_term(start.word_embeddings, start.anchored, anchor_penalty))
    if text_batches is None and any(term.batches is None for term in terms):
        raise DataError("no text to train on: give UTF-8 text files with one sentence or document per line")
    module = ObjectiveModule(model, terms, autocast_dtype=PRECISIONS[precision])

    eval_fn = _held_out_mlm(model, tokenizer, eval_texts, seq_len, batch_size, seed, packing, eval_batches) if (
        eval_texts and body.head == "mlm"
    ) else None

    settings = {
        "stage": "transfer",
        "language": language,
        "vocab_sha256": _vocab_sha256(tokenizer),
        "data_sha256": _texts_sha256(texts),
        "init": init,
        "anchors": anchors,
        "pos": pos,
        "adapters": adapters,
        "objective": objective,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "lr": lr,
        "packing": packing,
        "reference_pack": reference.body_fingerprint + ":" + reference.language if reference is not None else None,
    }
    if schedule != "linear":  # only then: checkpoints of earlier versions stay resumable
        settings["schedule"] = schedule
    if precision != "fp32":  # only then: checkpoints of earlier versions stay resumable
        settings["precision"] = precision
    if anchor_penalty is not None:
        settings["anchor_penalty"] = anchor_penalty
    config = LoopConfig(
        max_steps=max_steps,
        lr=lr,
        warmup_steps=min(100, max_steps // 10) if warmup_steps is None else warmup_steps,
        schedule=schedule,
        seed=seed,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        max_minutes=max_minutes,
        device=device,
        progress=progress,
        description=f"transfer {language}",
    )
    accelerator = make_accelerator(device)
    # Without an output (benchmarks, experiments) checkpoints go to a temporary folder.
    ckpt = checkpoint_dir_for(output) if output is not None else Path(tempfile.mkdtemp(prefix="embswap-transfer-"))
    if accelerator.is_main_process:
        if not resume or not (ckpt / TOKENIZER_SUBDIR).is_dir():
            ckpt.mkdir(parents=True, exist_ok=True)
            _save_tokenizer(tokenizer, ckpt / TOKENIZER_SUBDIR)
    handles = _freeze_rows(trainable, start.anchored) if anchors == "frozen" else []
    try:
        result = train(
            module,
            trainable,
            _CombinedBatches(text_batches, terms),
            config,
            checkpoint_dir=ckpt,
            resume=resume,
            eval_fn=eval_fn,
            settings=settings,
            accelerator=accelerator,
            optimizer_factory=_transfer_optimizer,
        )
    finally:
        for handle in handles:
            handle.remove()
    model.eval()

    provenance = {
        "stage": "transfer",
        "init": {**start.provenance(), "reference_pack": reference.language if reference is not None else None},
        "objective": objective,
        "loss_terms": {term.name: term.weight for term in terms},
        "anchors": anchors,
        **({"anchor_penalty": anchor_penalty} if anchor_penalty is not None else {}),
        "pos": pos,
        "adapters": adapters,
        "steps": result.step,
        "tokens_seen": result.tokens_seen,
        "minutes": round(result.elapsed_seconds / 60, 3),
        "stopped_by": result.stopped_by,
        "seed": seed,
        "lr": lr,
        "lr_source": recipe["lr_source"],
        "init_source": recipe["init_source"],
        "batch_size": batch_size,
        "seq_len": seq_len,
        "seq_len_source": seq_len_source,
        "packing": packing,
        **({"precision": precision} if precision != "fp32" else {}),
        **({"schedule": schedule} if schedule != "linear" else {}),
        "num_processes": result.num_processes,
        "data": {
            "texts": len(texts),
            "tokens": sum(len(ids) for ids in token_lists),
            "sequences": len(sequences),
            "sha256": settings["data_sha256"],
            "source": data_description,
        },
        "mlm_loss": {
            "train_final": result.train_loss,
            "eval_initial": result.first_metric("eval_mlm_loss"),
            "eval_final": result.last_metric("eval_mlm_loss"),
        },
    }
    table = position_embeddings(model) if pos else None
    pack = LanguagePack(
        language=language,
        tokenizer=tokenizer,
        word_embeddings=trainable["word_embeddings"].detach().cpu().clone(),
        body_fingerprint=body.fingerprint,
        output_bias=trainable["output_bias"].detach().cpu().clone() if "output_bias" in trainable else None,
        position_embeddings=table.weight.detach().cpu().clone() if table is not None else None,
        adapter_config=adapter_config,
        adapter_tensors=(
            {k: v.cpu() for k, v in adapters_support.extract(model, LANGUAGE_ADAPTER).items()} if adapters else None
        ),
        provenance=provenance,
    )
    if output is not None and accelerator.is_main_process:
        pack.save_pretrained(output)
        for name in (LOG_NAME, CURVE_NAME):
            if (ckpt / name).is_file():
                shutil.copyfile(ckpt / name, Path(output) / name)
    accelerator.wait_for_everyone()
    if output is None and accelerator.is_main_process:
        shutil.rmtree(ckpt, ignore_errors=True)
    return TransferOutcome(pack=pack, model=model, result=result, init=start)


transfer.__signature__ = inspect.signature(run_transfer).replace(return_annotation="LanguagePack")
