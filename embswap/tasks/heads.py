"""Task models and their inputs: a fresh task model on a body + pack, batch encoding, QA spans.

The task model is the family's ordinary ``*ForSequenceClassification`` / ``*ForQuestionAnswering``
(chosen by :func:`embswap.architectures.auto_class`). Its tensors split three ways: the pack's
(word embeddings), the body's (same names as in ``Body.tensors``) and the head's (everything
else: pooler, classifier, QA span layer), which is what a task module stores as ``head``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from ..architectures import auto_class, max_input_tokens, pack_parameter_names
from ..artifacts import Body, LanguagePack, TaskModule
from ..compose import check_composable, composed_state_dict
from ..errors import DataError, IncompatibleArtifactError
from .data import CLASSIFICATION_TASKS
from .data import SUPERVISED_TASKS as FINETUNE_TASKS

MAX_ANSWER_TOKENS = 30
N_BEST = 20


def task_config_overrides(task: str, labels: Sequence[str]) -> dict:
    if task in CLASSIFICATION_TASKS:
        return {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}
    return {}


def build_task_model(
    body: Body, pack: LanguagePack, task: str, labels: Sequence[str], *, seed: int = 0
) -> PreTrainedModel:
    """A task model with the body's and pack's weights and a freshly initialised head.

    The head is drawn from the family's own initialiser under ``seed``, so a run is reproducible.
    """
    if task not in FINETUNE_TASKS:
        raise IncompatibleArtifactError(
            f"cannot fine-tune a {task!r} task; expected one of: {', '.join(FINETUNE_TASKS)}"
        )
    if task in CLASSIFICATION_TASKS and len(labels) < 2:
        raise DataError(f"a classifier needs at least 2 labels, got {list(labels)}")
    check_composable(body, pack)  # the body's config against its tensors, before anything is allocated
    config = body.hf_config(pack.vocab_size, **task_config_overrides(task, labels))
    torch.manual_seed(seed)
    model = auto_class(task).from_config(config)
    model.tie_weights()
    head = head_tensors(model, body)
    spec = TaskModule(task=task, labels=list(labels), head=head, body_fingerprint=body.fingerprint)
    model.load_state_dict(composed_state_dict(model, body, pack, spec), strict=True)
    return model


def head_tensors(model: PreTrainedModel, body: Body) -> dict[str, torch.Tensor]:
    """Copies of the model's tensors that neither the body nor a pack provides (the task head)."""
    aliases = pack_parameter_names(model)
    from_pack = {name for names in aliases.values() for name in names}
    return {
        name: tensor.detach().clone()
        for name, tensor in model.state_dict().items()
        if name not in from_pack and name not in body.tensors
    }


def model_inputs(model: PreTrainedModel, batch: dict) -> dict:
    """Only the tensors the model's forward accepts (DistilBERT takes no token_type_ids).

    A batch longer than the model's position table is refused here with a one-line error, rather than
    as a tensor-size mismatch deep inside the model's forward.
    """
    ids = batch.get("input_ids")
    limit = max_input_tokens(model.config)
    if ids is not None and limit is not None and ids.shape[-1] > limit:
        raise DataError(
            f"a batch of {ids.shape[-1]} tokens is longer than the body's {limit} positions; "
            f"use --seq-len {limit} or less"
        )
    accepted = _forward_parameters(type(model))
    return {k: v for k, v in batch.items() if k in accepted}


_FORWARD_CACHE: dict[type, frozenset] = {}


def _forward_parameters(cls: type) -> frozenset:
    if cls not in _FORWARD_CACHE:
        _FORWARD_CACHE[cls] = frozenset(inspect.signature(cls.forward).parameters)
    return _FORWARD_CACHE[cls]


def encode_classification(tokenizer, rows: Sequence[dict], seq_len: int) -> dict:
    """Tokenize a batch of (pair) classification rows, padded to the longest, as tensors."""
    texts = [row["text"] for row in rows]
    pairs = [row["text_pair"] for row in rows] if rows and "text_pair" in rows[0] else None
    return dict(tokenizer(texts, pairs, truncation=True, max_length=seq_len, padding=True, return_tensors="pt"))


# --------------------------------------------------------------------------- extractive QA


@dataclass
class QAFeatures:
    """Windows over the contexts: model inputs plus what maps a window back to its question."""

    inputs: list[dict]  # per window: input_ids, attention_mask (+ token_type_ids)
    example_index: list[int]  # window -> row index
    offsets: list[list[tuple[int, int] | None]]  # per token: context char span, None outside the context
    start_positions: list[int]  # training targets (0 = the [CLS] token when the answer is not inside)
    end_positions: list[int]


def doc_stride(seq_len: int) -> int:
    """Overlap between consecutive context windows, in tokens."""
    return max(1, min(128, seq_len // 4))


def _clip_question(tokenizer, question: str, max_tokens: int) -> str:
    """Keep at most ``max_tokens`` tokens of a question, so the context always gets room."""
    question = question.lstrip()
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_tokens:
        return question
    return question[: enc["offset_mapping"][max_tokens - 1][1]]


def prepare_qa(tokenizer, rows: Sequence[dict], seq_len: int) -> QAFeatures:
    """Tokenize question + context into overlapping windows with start/end targets (HF's recipe)."""
    if not getattr(tokenizer, "is_fast", False):
        raise IncompatibleArtifactError("extractive QA needs a fast tokenizer (offset mapping); retrain the tokenizer")
    questions = [_clip_question(tokenizer, row["question"], seq_len // 2) for row in rows]
    contexts = [row["context"] for row in rows]
    enc = tokenizer(
        questions,
        contexts,
        truncation="only_second",
        max_length=seq_len,
        stride=doc_stride(seq_len),
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    mapping = enc.pop("overflow_to_sample_mapping")
    offset_lists = enc.pop("offset_mapping")
    features = QAFeatures([], [], [], [], [])
    for i, example in enumerate(mapping):
        sequence_ids = enc.sequence_ids(i)
        offsets = [span if sequence_ids[t] == 1 else None for t, span in enumerate(offset_lists[i])]
        features.inputs.append({key: values[i] for key, values in enc.items()})
        features.example_index.append(example)
        features.offsets.append(offsets)
        start, end = _answer_tokens(rows[example]["answers"], offsets)
        features.start_positions.append(start)
        features.end_positions.append(end)
    return features


def _answer_tokens(answers: dict, offsets: list[tuple[int, int] | None]) -> tuple[int, int]:
    """Token span of the first gold answer in this window, or (0, 0) when it is not fully inside."""
    if not answers["text"]:
        return 0, 0
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    inside = [t for t, span in enumerate(offsets) if span is not None]
    if not inside or offsets[inside[0]][0] > start_char or offsets[inside[-1]][1] < end_char:
        return 0, 0
    start = next(t for t in inside if offsets[t][1] > start_char)
    end = next(t for t in reversed(inside) if offsets[t][0] < end_char)
    return start, max(start, end)


def best_span(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    offsets: list[tuple[int, int] | None],
    max_answer_tokens: int = MAX_ANSWER_TOKENS,
    n_best: int = N_BEST,
) -> tuple[float, tuple[int, int] | None]:
    """Highest start+end score over valid spans (inside the context, end >= start, short enough).

    Returns (score, (start_char, end_char)) or (-inf, None) when no span is valid.
    """
    starts = torch.argsort(start_logits, descending=True)[:n_best].tolist()
    ends = torch.argsort(end_logits, descending=True)[:n_best].tolist()
    best: tuple[float, tuple[int, int] | None] = (float("-inf"), None)
    for s in starts:
        if s >= len(offsets) or offsets[s] is None:
            continue
        for e in ends:
            if e >= len(offsets) or offsets[e] is None or e < s or e - s + 1 > max_answer_tokens:
                continue
            score = float(start_logits[s] + end_logits[e])
            if score > best[0]:
                best = (score, (offsets[s][0], offsets[e][1]))
    return best


def pad_features(tokenizer, inputs: Sequence[dict]) -> dict:
    """Pad a list of tokenized windows into one batch of tensors."""
    return dict(tokenizer.pad(list(inputs), padding=True, return_tensors="pt"))
