"""Body, LanguagePack and TaskModule: what they hold, what each saves and loads, fingerprints, compatibility.

The save / load / push machinery they share is :mod:`embswap.artifact_base`'s.

Tensor names follow the family's models with heads (``bert.encoder...``, ``cls.predictions...``)
so one body serves the masked LM and every task model built on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import torch
from transformers import AutoConfig, PretrainedConfig, PreTrainedTokenizerBase

from ._version import __version__
from .architectures import TASK_TYPES, get_family
from .artifact_base import Artifact, load_weights
from .constants import (
    BODY_WEIGHTS,
    OUTPUT_BIAS,
    PACK_ADAPTER_WEIGHTS,
    PACK_WEIGHTS,
    POSITION_EMBEDDINGS,
    TASK_ADAPTER_WEIGHTS,
    TASK_DELTA_WEIGHTS,
    TASK_HEAD_WEIGHTS,
    TASK_SPECIAL_ROWS,
    TOKENIZER_DIR,
    WORD_EMBEDDINGS,
)
from .errors import CorruptArtifactError, IncompatibleArtifactError, InvalidNameError
from .io import file_stamp, optional_dict, recall, remember, require, require_sha256, save_tensors, tensor_bytes
from .names import check_name
from .pack_tokenizer import check_token_ids, load_tokenizer
from .safety import check_representable, dtype_name

# Config keys that say nothing about the architecture (or differ per language) and so stay out of
# the body fingerprint and of the stored body config.
_VOLATILE_CONFIG_KEYS = frozenset(
    {
        "vocab_size",
        "_name_or_path",
        "transformers_version",
        "architectures",
        "torch_dtype",
        "dtype",
        "id2label",
        "label2id",
        "problem_type",
        "finetuning_task",
        "_attn_implementation_autoset",
    }
)


def architecture_config(config: PretrainedConfig | dict) -> dict:
    """The config as stored in a body: everything but vocabulary size and bookkeeping fields."""
    data = config.to_dict() if isinstance(config, PretrainedConfig) else dict(config)
    return {k: v for k, v in data.items() if k not in _VOLATILE_CONFIG_KEYS}


@dataclass(eq=False)
class Body(Artifact):
    """Every weight of the model except the word embeddings and the MLM output bias.

    ``head`` is "mlm" for a masked-LM body and "none" for a head-less encoder (sentence encoders).
    """

    family: str
    model_config: dict
    special_tokens: dict[str, int]
    tensors: dict[str, torch.Tensor]
    embedding_dim: int
    head: str = "mlm"
    provenance: dict = field(default_factory=dict)

    kind: ClassVar[str] = "body"

    def _fingerprint_header(self) -> bytes:
        header = {
            "family": self.family,
            "head": self.head,
            "config": self.model_config,
            "special_tokens": self.special_tokens,
            "embedding_dim": self.embedding_dim,
        }
        return json.dumps(header, sort_keys=True).encode()

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 over the architecture config, special ids and every tensor's name/dtype/shape/bytes."""
        digest = hashlib.sha256(self._fingerprint_header())
        for name in sorted(self.tensors):
            tensor = self.tensors[name]
            digest.update(f"\n{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
            digest.update(tensor_bytes(tensor))
        return digest.hexdigest()

    @property
    def short_fingerprint(self) -> str:
        return self.fingerprint[:12]

    def hf_config(self, vocab_size: int, **overrides) -> PretrainedConfig:
        """A transformers config for a model with this body and a vocabulary of ``vocab_size``."""
        data = dict(self.model_config)
        model_type = data.pop("model_type")
        data.update(overrides)
        return AutoConfig.for_model(model_type, vocab_size=vocab_size, **data)

    @property
    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.tensors.values())

    def _write(self, folder: Path) -> dict:
        save_tensors(self.tensors, folder / BODY_WEIGHTS)
        return {
            "family": self.family,
            "model_config": self.model_config,
            "special_tokens": self.special_tokens,
            "embedding_dim": self.embedding_dim,
            "head": self.head,
            "fingerprint": self.fingerprint,
            "provenance": self.provenance,
        }

    @classmethod
    def _read(cls, folder: Path, config: dict) -> Body:
        family = require(config, "family", str, folder)
        get_family(family)
        weights = folder / BODY_WEIGHTS
        stamp = file_stamp(weights)  # before reading: what is remembered must be about these bytes
        body = cls(
            family=family,
            model_config=require(config, "model_config", dict, folder),
            special_tokens=require(config, "special_tokens", dict, folder),
            tensors=load_weights(weights),
            embedding_dim=require(config, "embedding_dim", int, folder),
            head=require(config, "head", str, folder),
            provenance=config.get("provenance", {}),
        )
        _check_model_config(body, folder)
        _reuse_fingerprint(body, weights, stamp)
        recorded = require_sha256(config, "fingerprint", folder)
        if body.fingerprint != recorded:
            raise CorruptArtifactError(
                f"{folder}: the body's tensors hash to {body.short_fingerprint}, its config records {recorded[:12]}; "
                "the weights were changed or damaged"
            )
        return body


@dataclass(eq=False)
class LanguagePack(Artifact):
    """A language for one body: tokenizer, word embeddings, MLM output bias (+pos, +adapter)."""

    language: str
    tokenizer: PreTrainedTokenizerBase
    word_embeddings: torch.Tensor  # [vocab, embedding_dim]
    body_fingerprint: str
    output_bias: torch.Tensor | None = None  # [vocab]; None for head-less bodies
    position_embeddings: torch.Tensor | None = None  # [max_positions, embedding_dim], the paper's +pos
    adapter_config: dict | None = None  # adapters library config (+adapters)
    adapter_tensors: dict[str, torch.Tensor] | None = None
    provenance: dict = field(default_factory=dict)

    kind: ClassVar[str] = "language_pack"

    def __post_init__(self) -> None:
        check_name(self.language, "language code")
        check_token_ids(self)
        rows = self.word_embeddings.shape[0]
        if self.output_bias is not None and self.output_bias.shape != (rows,):
            raise IncompatibleArtifactError(
                f"pack {self.language!r}: output bias has shape {tuple(self.output_bias.shape)}, expected ({rows},)"
            )
        if (self.adapter_config is None) != (self.adapter_tensors is None):
            raise IncompatibleArtifactError(f"pack {self.language!r}: an adapter needs both its config and its tensors")

    @property
    def vocab_size(self) -> int:
        return self.word_embeddings.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.word_embeddings.shape[1]

    def named_tensors(self) -> dict[str, torch.Tensor | None]:
        """Every tensor of the pack under its stored name (None where the pack has none), adapter included."""
        return {
            WORD_EMBEDDINGS: self.word_embeddings,
            OUTPUT_BIAS: self.output_bias,
            POSITION_EMBEDDINGS: self.position_embeddings,
            **(self.adapter_tensors or {}),
        }

    def to(self, dtype: torch.dtype) -> LanguagePack:
        """A copy with every floating-point tensor in ``dtype`` (e.g. ``torch.bfloat16`` halves the
        pack on disk and in memory); composing it casts the tensors back to the body's precision."""
        if not dtype.is_floating_point:
            raise IncompatibleArtifactError(f"a pack's tensors must stay floating point; got {dtype}")

        check_representable(
            self.named_tensors(),
            dtype,
            owner=f"pack {self.language!r}",
            advice="keep this pack in a wider dtype (float32 or bfloat16)",
            error=IncompatibleArtifactError,
        )

        def cast(tensor):
            return tensor.to(dtype) if tensor is not None and tensor.is_floating_point() else tensor

        return dataclasses.replace(
            self,
            word_embeddings=cast(self.word_embeddings),
            output_bias=cast(self.output_bias),
            position_embeddings=cast(self.position_embeddings),
            adapter_tensors=(
                {k: cast(v) for k, v in self.adapter_tensors.items()} if self.adapter_tensors else self.adapter_tensors
            ),
            provenance={**self.provenance, "dtype": str(dtype).removeprefix("torch.")},
        )

    def _write(self, folder: Path) -> dict:
        tensors = {WORD_EMBEDDINGS: self.word_embeddings}
        if self.output_bias is not None:
            tensors[OUTPUT_BIAS] = self.output_bias
        if self.position_embeddings is not None:
            tensors[POSITION_EMBEDDINGS] = self.position_embeddings
        save_tensors(tensors, folder / PACK_WEIGHTS)
        if self.adapter_tensors is not None:
            save_tensors(self.adapter_tensors, folder / PACK_ADAPTER_WEIGHTS)
        self.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
        return {
            "language": self.language,
            "body_fingerprint": self.body_fingerprint,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "has_output_bias": self.output_bias is not None,
            "position_embeddings": self.position_embeddings is not None,
            "adapter_config": self.adapter_config,
            "provenance": {"embswap_version": __version__, **self.provenance},
        }

    @classmethod
    def _read(cls, folder: Path, config: dict) -> LanguagePack:
        vocab, hidden = require(config, "vocab_size", int, folder), require(config, "hidden_size", int, folder)
        expected: dict[str, tuple[int | None, ...]] = {WORD_EMBEDDINGS: (vocab, hidden)}
        if config.get("has_output_bias") is True:
            expected[OUTPUT_BIAS] = (vocab,)
        if config.get("position_embeddings") is True:
            expected[POSITION_EMBEDDINGS] = (None, hidden)
        language = require(config, "language", str, folder)
        try:
            check_name(language, "language code")
        except InvalidNameError as err:
            raise CorruptArtifactError(f"{folder}/config.json: {err}") from None
        tensors = load_weights(folder / PACK_WEIGHTS, expected_shapes=expected)
        matrix = tensors[WORD_EMBEDDINGS]
        if not matrix.is_floating_point():
            raise CorruptArtifactError(
                f"{folder / PACK_WEIGHTS}: word embeddings have dtype {matrix.dtype}, expected floats"
            )
        if tuple(matrix.shape) != (vocab, hidden):
            raise CorruptArtifactError(
                f"{folder}: word embeddings have shape {tuple(matrix.shape)}, config says ({vocab}, {hidden})"
            )
        adapter_config = optional_dict(config, "adapter_config", folder)
        adapter = load_weights(folder / PACK_ADAPTER_WEIGHTS) if adapter_config else None
        return cls(
            language=language,
            tokenizer=load_tokenizer(folder / TOKENIZER_DIR),
            word_embeddings=matrix,
            body_fingerprint=require_sha256(config, "body_fingerprint", folder),
            output_bias=tensors.get(OUTPUT_BIAS),
            position_embeddings=tensors.get(POSITION_EMBEDDINGS),
            adapter_config=adapter_config,
            adapter_tensors=adapter,
            provenance=config.get("provenance", {}),
        )


@dataclass(eq=False)
class TaskModule(Artifact):
    """What step 3 (fine-tuning) adds: the head, the body changes, the shared special-token rows.

    ``mode`` is "full" (fine-tuned body tensors stored in ``body_delta``: the paper), "adapter"
    (a task adapter on the untouched body, MAD-X style) or "frozen" (head only).
    """

    task: str
    labels: list[str]
    head: dict[str, torch.Tensor]
    body_fingerprint: str
    mode: str = "full"
    body_delta: dict[str, torch.Tensor] = field(default_factory=dict)
    special_rows: dict[int, torch.Tensor] = field(default_factory=dict)
    adapter_config: dict | None = None
    adapter_tensors: dict[str, torch.Tensor] | None = None
    settings: dict = field(default_factory=dict)  # task-specific (pooling, max length, ...)
    provenance: dict = field(default_factory=dict)

    kind: ClassVar[str] = "task_module"

    def __post_init__(self) -> None:
        if self.task not in TASK_TYPES:
            raise IncompatibleArtifactError(
                f"unknown task type {self.task!r}; expected one of: {', '.join(TASK_TYPES)}"
            )
        if self.mode not in ("full", "adapter", "frozen"):
            raise IncompatibleArtifactError(f"unknown task mode {self.mode!r}; expected full, adapter or frozen")

    def _write(self, folder: Path) -> dict:
        save_tensors(self.head, folder / TASK_HEAD_WEIGHTS)
        if self.body_delta:
            save_tensors(self.body_delta, folder / TASK_DELTA_WEIGHTS)
        if self.special_rows:
            ids = sorted(self.special_rows)
            rows = torch.stack([self.special_rows[i] for i in ids])
            save_tensors({"ids": torch.tensor(ids, dtype=torch.int64), "rows": rows}, folder / TASK_SPECIAL_ROWS)
        if self.adapter_tensors is not None:
            save_tensors(self.adapter_tensors, folder / TASK_ADAPTER_WEIGHTS)
        return {
            "task": self.task,
            "labels": self.labels,
            "body_fingerprint": self.body_fingerprint,
            "mode": self.mode,
            "adapter_config": self.adapter_config,
            "settings": self.settings,
            "provenance": {"embswap_version": __version__, **self.provenance},
        }

    @classmethod
    def _read(cls, folder: Path, config: dict) -> TaskModule:
        files = config["files"]
        special: dict[int, torch.Tensor] = {}
        if TASK_SPECIAL_ROWS in files:
            data = load_weights(folder / TASK_SPECIAL_ROWS, expected_shapes={"ids": (None,), "rows": (None, None)})
            if (
                set(data) != {"ids", "rows"}
                or data["ids"].shape[0] != data["rows"].shape[0]
                or data["ids"].is_floating_point()
            ):
                raise CorruptArtifactError(f"{folder / TASK_SPECIAL_ROWS} must hold matching 'ids' and 'rows'")
            special = {int(i): row for i, row in zip(data["ids"].tolist(), data["rows"])}
        adapter_config = optional_dict(config, "adapter_config", folder)
        return cls(
            task=require(config, "task", str, folder),
            labels=require(config, "labels", list, folder),
            head=load_weights(folder / TASK_HEAD_WEIGHTS),
            body_fingerprint=require_sha256(config, "body_fingerprint", folder),
            mode=require(config, "mode", str, folder),
            body_delta=load_weights(folder / TASK_DELTA_WEIGHTS) if TASK_DELTA_WEIGHTS in files else {},
            special_rows=special,
            adapter_config=adapter_config,
            adapter_tensors=load_weights(folder / TASK_ADAPTER_WEIGHTS) if adapter_config else None,
            settings=config.get("settings", {}),
            provenance=config.get("provenance", {}),
        )


def _reuse_fingerprint(body: Body, weights: Path, stamp: tuple | None) -> None:
    """Take the fingerprint this process computed from the very same bytes (see ``embswap.io.recall``),
    or compute it and remember it: it is a function of the file's bytes and the config header."""
    key = "fingerprint:" + hashlib.sha256(body._fingerprint_header()).hexdigest()
    known = recall(weights, stamp)
    if known is not None and key in known.derived:
        body.__dict__["fingerprint"] = known.derived[key]  # where cached_property keeps its value
    else:
        remember(weights, stamp, derived={key: body.fingerprint})


def _check_model_config(body: Body, folder: Path) -> None:
    """The stored architecture config builds a transformers config (checked on load, not at compose time)."""
    if not isinstance(body.model_config.get("model_type"), str):
        raise CorruptArtifactError(f"{folder}/config.json: model_config has no 'model_type'; save the body again")
    try:
        body.hf_config(vocab_size=1)
    except Exception as err:  # transformers raises many kinds on a bad config
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CorruptArtifactError(
            f"{folder}/config.json: model_config is not a valid transformers config ({first})"
        ) from None


def check_compatible(body: Body, artifact: LanguagePack | TaskModule, name: str = "") -> None:
    """A pack or task module composes only onto the body it was trained for."""
    label = name or (f"pack {artifact.language!r}" if isinstance(artifact, LanguagePack) else f"task {artifact.task!r}")
    if artifact.body_fingerprint != body.fingerprint:
        raise IncompatibleArtifactError(
            f"{label} was trained for body {artifact.body_fingerprint[:12]}, but this body is {body.short_fingerprint}; "
            "use the body it was trained with, or train it again for this body"
        )
    _check_range(body, artifact, label)
    if isinstance(artifact, LanguagePack):
        check_token_ids(artifact)  # again: its tokenizer may have gained tokens since it was made
        if artifact.hidden_size != body.embedding_dim:
            raise IncompatibleArtifactError(
                f"{label} has {artifact.hidden_size}-dimensional embeddings, the body expects {body.embedding_dim}"
            )
        ids = {role: getattr(artifact.tokenizer, f"{role}_token_id", None) for role in body.special_tokens}
        if ids != body.special_tokens:
            raise IncompatibleArtifactError(
                f"{label}: special-token ids {ids} differ from the body's {body.special_tokens}; "
                "train the tokenizer with `embswap tokenizer train --body ...` so the shared tokens keep their ids"
            )


def _check_range(body: Body, artifact: LanguagePack | TaskModule, label: str) -> None:
    """No tensor of the body or ``artifact`` becomes Inf in the dtype models are built in (scans only
    tensors in a wider dtype than that one, so the usual case costs nothing)."""
    compute = torch.get_default_dtype()
    if isinstance(artifact, LanguagePack):
        parts = artifact.named_tensors()
    else:
        parts = {
            **artifact.head,
            **artifact.body_delta,
            **(artifact.adapter_tensors or {}),
            **{f"special row {i}": row for i, row in artifact.special_rows.items()},
        }
    for owner, tensors in (("the body", body.tensors), (label, parts)):
        check_representable(
            tensors,
            compute,
            owner=owner,
            precision=f"{dtype_name(compute)}, the precision the model computes in",
            advice="keep its values within that range",
            error=IncompatibleArtifactError,
        )
