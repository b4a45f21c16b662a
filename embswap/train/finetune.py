"""Step 3: fine-tune a task on L1 with the word embeddings frozen; the result is a TaskModule.

Modes (``TaskModule.mode``):

- ``full`` (the paper): body and head train; the word-embedding matrix stays frozen except the
  shared special-token rows ([CLS], [SEP], ...), which every language uses and which do train.
  The special rows are one small trainable table written over the lookup of those ids (a
  forward hook), so the pack's matrix itself never receives a gradient and its other rows stay
  bit-identical; composing writes the same rows into whichever pack is swapped in.
- ``adapter``: the body is untouched; a Houlsby task adapter and the head train (MAD-X style).
- ``frozen``: only the head trains.

``noise`` adds N(0, noise²) to the outputs of the word, position and segment embeddings in
training only (the paper's +noise). ``extra_packs`` (docs/method.md#swap-robust-fine-tuning):
each batch reads through the original pack or one of the extra L1 packs, round-robin, by
re-pointing the embedding module's weight (no copy); the batches per pack are recorded.
:func:`relearn_l1_packs` (in :mod:`embswap.train.robust`) makes and stores those extra packs.

Every task module records the packs fine-tuning read (``provenance["trained_with_packs"]``:
name, language and the SHA-256 of the word-embedding bytes), so a self-transfer check can refuse
a pack the task model has already seen.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from .. import adapters_support
from ..architectures import pack_parameter_names, position_embeddings, token_type_embeddings, word_embeddings
from ..artifacts import Body, LanguagePack, TaskModule, check_compatible
from ..compose import as_artifact
from ..digests import embedding_fingerprint, tensor_sha256
from ..errors import DataError, IncompatibleArtifactError
from ..evaluate import score_model
from ..outputs import check_output
from ..tasks.data import CLASSIFICATION_TASKS, check_labels_subset, label_names, validate_rows
from ..tasks.heads import MAX_ANSWER_TOKENS, build_task_model, doc_stride, head_tensors, model_inputs
from .checkpoint import checkpoint_dir_for, copy_run_files
from .embedding_hooks import PackSwitch, SpecialRows, noise_hook
from .finetune_config import MODES, FinetuneConfig, default_lr, resolve_config
from .loop import LoopConfig, TrainResult, derive_seed, train
from .robust import relearn_l1_packs, robust_pack_name
from .task_batches import TaskBatches, qa_units

_NO_DECAY_MARKERS = ("bias", "LayerNorm", "layer_norm", "layernorm", "norm.weight", "special_rows")


# --------------------------------------------------------------------------- the run


class FinetuneModule(nn.Module):
    """What the training loop drives: picks the batch's pack, runs the task model, returns the loss."""

    def __init__(self, model: nn.Module, packs: PackSwitch, special: SpecialRows | None):
        super().__init__()
        self.model = model
        self.packs = packs
        self.special = special

    def forward(self, batch: dict) -> dict:
        batch = dict(batch)
        index = int(batch.pop("pack_index", 0))
        self.packs.select(index)
        if self.training:
            self.packs.counts[index] += 1
        outputs = self.model(**model_inputs(self.model, batch))
        return {"loss": outputs.loss}


def _tensor_digest(tensor: torch.Tensor) -> str:
    return tensor_sha256(tensor)[:16]


def _rows_digest(rows: Sequence[dict]) -> str:
    return hashlib.sha256(json.dumps(list(rows), sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


class FinetuneRun:
    """A task model being fine-tuned: build it, train it (resumably), read it out as a TaskModule.

    ``model`` is the live transformers model (hooks included); in eval mode it computes exactly
    what the composed TaskModule computes.
    """

    def __init__(
        self,
        body: Body,
        pack: LanguagePack,
        train_rows: Sequence[dict],
        config: FinetuneConfig,
        *,
        dev_rows: Sequence[dict] | None = None,
        labels: Sequence[str] | None = None,
        extra_packs: Sequence[LanguagePack] = (),
        pack_names: Sequence[str] | None = None,
        data_description: str = "",
    ):
        check_compatible(body, pack)
        for i, extra in enumerate(extra_packs):
            check_compatible(body, extra, f"robust pack {i + 1} ({extra.language!r})")
            if extra.position_embeddings is not None or extra.adapter_config is not None:
                raise IncompatibleArtifactError(
                    f"robust pack {i + 1} ({extra.language!r}) has its own position embeddings or adapter; "
                    "swap-robust fine-tuning alternates plain word-embedding packs"
                )
        if not train_rows:
            raise DataError("no training rows; give a task file with at least one row")
        config, self.sources = resolve_config(body, config)
        self.body, self.pack, self.config = body, pack, config
        self.extra_packs = list(extra_packs)
        self.pack_names = self._names(pack_names)
        self.train_rows = validate_rows(train_rows, config.task, "training row")
        self.dev_rows = validate_rows(dev_rows or [], config.task, "dev row")
        self.data_description = data_description
        task = config.task
        if task in CLASSIFICATION_TASKS:
            self.labels = label_names(self.train_rows, labels)
            if self.dev_rows:
                check_labels_subset((r["label"] for r in self.dev_rows), self.labels, "the dev data")
        else:
            self.labels = []

        self.model = build_task_model(body, pack, task, self.labels, seed=derive_seed(config.seed, "head"))
        self.head_names = sorted(head_tensors(self.model, body))
        self.tokenizer = pack.tokenizer
        embedding = word_embeddings(self.model)
        self.special: SpecialRows | None = None
        if config.mode == "full":
            self.special = SpecialRows(embedding.weight, body.special_tokens.values())
            embedding.register_forward_hook(self.special.hook)
        self.packs = PackSwitch(embedding, [p.word_embeddings for p in self.extra_packs])
        if config.noise > 0:
            hook = noise_hook(config.noise)
            for module in (embedding, position_embeddings(self.model), token_type_embeddings(self.model)):
                if module is not None:
                    module.register_forward_hook(hook)
        self.adapter_config: dict | None = None
        self._set_trainable()
        self.module = FinetuneModule(self.model, self.packs, self.special)

        tokenizers = [pack.tokenizer] + [p.tokenizer for p in self.extra_packs]
        if task == "qa":
            units = [qa_units(tok, self.train_rows, config.seq_len) for tok in tokenizers]
        else:
            units = [self.train_rows for _ in tokenizers]
        self.batches = TaskBatches(units, tokenizers, task, self.labels, config.batch_size, config.seq_len, config.seed)
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.max_steps = (
            config.max_steps if config.max_steps is not None else math.ceil(config.epochs * self.steps_per_epoch)
        )

    def _names(self, names: Sequence[str] | None) -> list[str]:
        """Names of the pack and the extra packs: given, else the language and ``{language}-robust-{i}``."""
        packs = [self.pack, *self.extra_packs]
        if names is None:
            return [self.pack.language] + [robust_pack_name(p.language, i) for i, p in enumerate(packs[1:], start=1)]
        if len(names) != len(packs):
            raise DataError(
                f"{len(names)} pack names for {len(packs)} packs; give one name per pack, the L1 pack first"
            )
        return [str(name) for name in names]

    def trained_with_packs(self) -> list[dict]:
        """Every pack the training batches read: name, language, SHA-256 (hex) of the word-embedding bytes."""
        packs = [self.pack, *self.extra_packs]
        return [
            {"name": name, "language": p.language, "fingerprint": embedding_fingerprint(p)}
            for name, p in zip(self.pack_names, packs)
        ]

    def _set_trainable(self) -> None:
        """requires_grad per mode; the pack's tensors (word embeddings, +pos table) never train."""
        model, mode = self.model, self.config.mode
        pack_tensors = {id(self.packs.tables[0])}
        pos = position_embeddings(model)
        if self.pack.position_embeddings is not None and pos is not None:
            pack_tensors.add(id(pos.weight))
        if self.pack.adapter_config is not None:  # a language adapter (MAD-X): stays frozen, stacked under the task
            adapters_support.load(model, adapters_support.LANGUAGE, self.pack.adapter_config, self.pack.adapter_tensors)
        if mode == "adapter":
            torch.manual_seed(derive_seed(self.config.seed, "adapter"))
            self.adapter_config = adapters_support.houlsby_config()
            adapters_support.add_adapter(model, adapters_support.TASK, self.adapter_config)
        if self.pack.adapter_config is not None or mode == "adapter":
            from adapters.composition import Stack

            active = [
                n for n in (adapters_support.LANGUAGE, adapters_support.TASK) if n in model.adapters_config.adapters
            ]
            model.set_active_adapters(Stack(*active) if len(active) > 1 else active[0])
        head = set(self.head_names)
        task_adapter = (
            set(adapters_support.adapter_parameter_names(model, adapters_support.TASK)) if mode == "adapter" else set()
        )
        self.trained: dict[str, nn.Parameter] = {}
        for name, param in model.named_parameters():
            if mode == "full":
                wanted = id(param) not in pack_tensors and ".adapters." not in name
            else:
                wanted = name in head or name in task_adapter
            param.requires_grad_(wanted)
            if wanted:
                self.trained[name] = param
        if self.special is not None:
            self.trained["special_rows"] = self.special.rows

    # ------------------------------------------------------------------ training

    def settings(self) -> dict:
        """What a resumed run must share with the interrupted one."""
        return {
            **{
                k: v
                for k, v in asdict(self.config).items()
                if k not in ("max_minutes", "device", "progress", "checkpoint_every")
            },
            "max_steps": self.max_steps,
            "labels": self.labels,
            "train_data": _rows_digest(self.train_rows),
            "pack": _tensor_digest(self.pack.word_embeddings),
            "extra_packs": [_tensor_digest(p.word_embeddings) for p in self.extra_packs],
            "body": self.body.fingerprint,
        }

    def _optimizer(self, params: list[nn.Parameter], loop: LoopConfig) -> torch.optim.Optimizer:
        no_decay_ids = {id(p) for name, p in self.trained.items() if any(m in name for m in _NO_DECAY_MARKERS)}
        groups = [
            {"params": [p for p in params if id(p) not in no_decay_ids], "weight_decay": self.config.weight_decay},
            {"params": [p for p in params if id(p) in no_decay_ids], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=loop.lr)

    def dev_metrics(self) -> dict:
        """Dev-set metrics of the live model through the original pack."""
        if not self.dev_rows:
            return {}
        self.packs.select(0)
        metrics = score_model(
            self.model, self.tokenizer, self.config.task, self.labels, self.dev_rows, seq_len=self.config.seq_len
        )
        return {k: v for k, v in metrics.items() if k != "n"}

    def train(self, checkpoint_dir: str | os.PathLike, *, resume: bool = False) -> TrainResult:
        cfg = self.config
        loop = LoopConfig(
            max_steps=self.max_steps,
            lr=cfg.lr,
            warmup_steps=int(cfg.warmup_ratio * self.max_steps),
            weight_decay=cfg.weight_decay,
            seed=cfg.seed,
            checkpoint_every=cfg.checkpoint_every,
            log_every=max(1, min(50, self.steps_per_epoch)),
            eval_every=self.steps_per_epoch if self.dev_rows else None,
            eval_at_start=False,
            max_minutes=cfg.max_minutes,
            device=cfg.device,
            progress=cfg.progress,
            description=f"finetune {cfg.task} ({cfg.mode})",
        )
        self.result = train(
            self.module,
            self.trained,
            self.batches,
            loop,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            eval_fn=self.dev_metrics if self.dev_rows else None,
            optimizer_factory=self._optimizer,
            settings=self.settings(),
        )
        self.packs.select(0)
        self.model.eval()
        return self.result

    def batches_per_pack(self, steps: int) -> list[int]:
        """How many of the first ``steps`` training batches read through each pack."""
        counts = [0] * len(self.packs.tables)
        for step in range(steps):
            counts[self.batches.pack_of(step)] += 1
        return counts

    # ------------------------------------------------------------------ the artifact

    def task_module(self) -> TaskModule:
        """The trained head, body changes, special rows and adapter, as a TaskModule."""
        cfg = self.config
        state = {name: t.detach().cpu() for name, t in self.model.state_dict().items()}
        head = {name: state[name].clone() for name in self.head_names}
        body_delta: dict[str, torch.Tensor] = {}
        if cfg.mode == "full":
            # A +pos pack's position table is the pack's, not a change to the body.
            from_pack = (
                set(pack_parameter_names(self.model)["position_embeddings"])
                if self.pack.position_embeddings is not None
                else set()
            )
            for name, tensor in state.items():
                if (
                    name in self.body.tensors
                    and name not in head
                    and name not in from_pack
                    and not torch.equal(tensor, self.body.tensors[name])
                ):
                    body_delta[name] = tensor.clone()
        adapter_tensors = adapters_support.extract(self.model, adapters_support.TASK) if cfg.mode == "adapter" else None
        adapter_tensors = {k: v.cpu() for k, v in adapter_tensors.items()} if adapter_tensors is not None else None
        result = getattr(self, "result", None)
        steps = result.step if result is not None else 0
        settings = {"seq_len": cfg.seq_len, "noise": cfg.noise, "mode": cfg.mode}
        if cfg.task == "qa":
            settings.update(max_answer_tokens=MAX_ANSWER_TOKENS, doc_stride=doc_stride(cfg.seq_len))
        provenance = {
            "stage": "finetune",
            "pack_language": self.pack.language,
            "epochs": cfg.epochs,
            "steps": steps,
            "steps_per_epoch": self.steps_per_epoch,
            "lr": cfg.lr,
            "lr_source": self.sources["lr_source"],
            "seq_len": cfg.seq_len,
            "seq_len_source": self.sources["seq_len_source"],
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "warmup_ratio": cfg.warmup_ratio,
            "weight_decay": cfg.weight_decay,
            "train_rows": len(self.train_rows),
            "dev_rows": len(self.dev_rows),
            "data": self.data_description,
            "train_data_digest": _rows_digest(self.train_rows),
            # Every pack the task saw, so a diagnostic can refuse to call one of them "unseen".
            "trained_with_packs": self.trained_with_packs(),
        }
        if result is not None:
            provenance.update(
                stopped_by=result.stopped_by,
                elapsed_seconds=round(result.elapsed_seconds, 3),
                final_train_loss=result.train_loss,
                dev_metrics={k[5:]: v for k, v in _last_eval(result.history).items()},
                resumed_from=result.resumed_from,
            )
        if self.extra_packs:
            provenance["batches_per_pack"] = self.batches_per_pack(steps)
        return TaskModule(
            task=cfg.task,
            labels=list(self.labels),
            head=head,
            body_fingerprint=self.body.fingerprint,
            mode=cfg.mode,
            body_delta=body_delta,
            special_rows=self.special.as_dict() if self.special is not None else {},
            adapter_config=self.adapter_config,
            adapter_tensors=adapter_tensors,
            settings=settings,
            provenance=provenance,
        )


def _last_eval(history: list[dict]) -> dict:
    for record in reversed(history):
        metrics = {k: v for k, v in record.items() if k.startswith("eval_")}
        if metrics:
            return metrics
    return {}


def _names_of(pack, extra_packs: Sequence) -> list[str] | None:
    """Folder names of packs given as folders (None when all are objects: FinetuneRun names those)."""
    packs = [pack, *extra_packs]
    if all(isinstance(p, LanguagePack) for p in packs):
        return None
    names = [pack.language if isinstance(pack, LanguagePack) else Path(str(pack)).name]
    for i, p in enumerate(extra_packs, start=1):
        names.append(robust_pack_name(p.language, i) if isinstance(p, LanguagePack) else Path(str(p)).name)
    return names


def finetune(
    body,
    pack,
    task_type: str,
    train_rows: Sequence[dict],
    *,
    dev_rows: Sequence[dict] | None = None,
    labels: Sequence[str] | None = None,
    output: str | os.PathLike,
    mode: str = "full",
    noise: float = 0.0,
    epochs: float = 2,
    lr: float | None = None,
    batch_size: int = 32,
    seq_len: int | None = None,
    seed: int = 0,
    resume: bool = False,
    device: str | None = None,
    max_steps: int | None = None,
    max_minutes: float | None = None,
    extra_packs: Sequence | None = None,
    pack_names: Sequence[str] | None = None,
    checkpoint_every: int | None = 500,
    progress: bool = True,
    data_description: str = "",
    keep_checkpoint: bool = False,
) -> TaskModule:
    """Fine-tune ``task_type`` on ``train_rows`` through ``pack`` and save the TaskModule to ``output``.

    ``body`` / ``pack`` / ``extra_packs`` are artifacts or their folders (e.g. from
    :func:`relearn_l1_packs`); ``pack_names`` name them in the task's ``trained_with_packs``
    (default: a folder's name, else the language / ``{language}-robust-{i}``). The training log and
    learning curve are written beside the task's files; checkpoints go to a hidden sibling folder
    (``.NAME.checkpoint``) that ``resume=True`` continues from and that is removed once the run has
    finished all its steps (``keep_checkpoint`` keeps it). ``lr`` / ``seq_len`` None are picked from
    the body (:func:`resolve_config`); inputs longer than ``seq_len`` are cut, QA contexts windowed.
    """
    check_output(output, "task_module", inputs=(body, pack, *(extra_packs or [])))  # before training
    body = as_artifact(body, Body)
    extra_packs = list(extra_packs or [])
    if pack_names is None:
        pack_names = _names_of(pack, extra_packs)
    pack = as_artifact(pack, LanguagePack)
    extras = [as_artifact(p, LanguagePack) for p in extra_packs]
    config = FinetuneConfig(
        task=task_type,
        mode=mode,
        noise=noise,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seq_len=seq_len,
        seed=seed,
        max_steps=max_steps,
        max_minutes=max_minutes,
        checkpoint_every=checkpoint_every,
        device=device,
        progress=progress,
    )
    run = FinetuneRun(
        body,
        pack,
        train_rows,
        config,
        dev_rows=dev_rows,
        labels=labels,
        extra_packs=extras,
        pack_names=pack_names,
        data_description=data_description,
    )
    ckpt = checkpoint_dir_for(output)
    result = run.train(ckpt, resume=resume)
    task = run.task_module()
    task.save_pretrained(output)
    copy_run_files(ckpt, Path(output))
    if result.stopped_by == "max_steps" and not keep_checkpoint:
        shutil.rmtree(ckpt, ignore_errors=True)
    return task


__all__ = [
    "FinetuneConfig",
    "FinetuneRun",
    "default_lr",
    "resolve_config",
    "finetune",
    "checkpoint_dir_for",
    "relearn_l1_packs",
    "robust_pack_name",
    "MODES",
]
