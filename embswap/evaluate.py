"""Scoring a language x task model on labelled rows: accuracy / macro-F1, or SQuAD exact / F1.

Metrics are percentages (0-100). ``evaluate`` composes body + pack + task exactly as users load
them, so a score here is the score of the exported model; ``score_model`` scores a live model
(fine-tuning uses it for the dev set each epoch).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel

from .architectures import resolve_seq_len
from .artifacts import TaskModule
from .compose import as_artifact, compose
from .errors import EmbswapError
from .store import Store
from .tasks.data import CLASSIFICATION_TASKS, check_labels_subset, load_rows, validate_rows
from .tasks.heads import best_span, encode_classification, model_inputs, pad_features, prepare_qa
from .tasks.metrics import classification_scores, squad_scores


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _length_order(rows: Sequence[dict]) -> list[int]:
    """Indices by text length, so batches pad little; results are put back in row order."""
    return sorted(range(len(rows)), key=lambda i: len(rows[i].get("text", "")) + len(rows[i].get("text_pair", "")))


@torch.no_grad()
def predict_labels(
    model: PreTrainedModel, tokenizer, rows: Sequence[dict], *, seq_len: int, batch_size: int = 64
) -> list[int]:
    """The arg-max class index for every (pair) classification row, in row order."""
    device = next(model.parameters()).device
    order = _length_order(rows)
    predictions = [0] * len(rows)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = encode_classification(tokenizer, [rows[i] for i in chunk], seq_len)
            batch = {k: v.to(device) for k, v in model_inputs(model, batch).items()}
            for i, index in zip(chunk, model(**batch).logits.argmax(-1).tolist()):
                predictions[i] = index
    finally:
        model.train(was_training)
    return predictions


@torch.no_grad()
def predict_answers(
    model: PreTrainedModel, tokenizer, rows: Sequence[dict], *, seq_len: int, batch_size: int = 64
) -> dict[str, str]:
    """The best-scoring answer text for every QA row (by id), over all of its context windows."""
    device = next(model.parameters()).device
    features = prepare_qa(tokenizer, rows, seq_len)
    best: dict[int, tuple[float, tuple[int, int] | None]] = {}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(features.inputs), batch_size):
            batch = pad_features(tokenizer, features.inputs[start : start + batch_size])
            batch = {k: v.to(device) for k, v in model_inputs(model, batch).items()}
            out = model(**batch)
            for j in range(out.start_logits.shape[0]):
                f = start + j
                candidate = best_span(out.start_logits[j].cpu(), out.end_logits[j].cpu(), features.offsets[f])
                example = features.example_index[f]
                if candidate[0] > best.get(example, (float("-inf"), None))[0]:
                    best[example] = candidate
    finally:
        model.train(was_training)
    answers = {}
    for i, row in enumerate(rows):
        span = best.get(i, (None, None))[1]
        answers[row["id"]] = row["context"][span[0] : span[1]] if span else ""
    return answers


def score_model(
    model: PreTrainedModel,
    tokenizer,
    task: str,
    labels: Sequence[str],
    rows: Sequence[dict],
    *,
    seq_len: int,
    batch_size: int = 64,
) -> dict:
    """Metrics of a live task model on ``rows``: accuracy/macro_f1/n or exact/f1/n."""
    if task == "qa":
        predictions = predict_answers(model, tokenizer, rows, seq_len=seq_len, batch_size=batch_size)
        return squad_scores(predictions, {row["id"]: row["answers"]["text"] for row in rows})
    if task not in CLASSIFICATION_TASKS:
        raise EmbswapError(f"evaluate scores classification, pair-classification and qa tasks, not {task!r}")
    check_labels_subset((row["label"] for row in rows), labels, "the evaluation data")
    indices = predict_labels(model, tokenizer, rows, seq_len=seq_len, batch_size=batch_size)
    return classification_scores([labels[i] for i in indices], [row["label"] for row in rows])


def evaluate(
    body, pack, task, rows, batch_size: int = 64, *, device=None, seq_len: int | None = None, **dataset_options
) -> dict:
    """Compose body + pack + task and score it on ``rows`` (a list of rows, a file or a named source).

    Returns ``{"accuracy", "macro_f1", "n"}`` for (pair) classification, ``{"exact", "f1", "n"}`` for
    QA, all metrics in percent. Inputs are cut to ``seq_len`` (None: the length the task was
    fine-tuned with, cut to what the body reads).
    """
    task = as_artifact(task, TaskModule)
    if isinstance(rows, (str, os.PathLike)) or dataset_options.get("dataset"):
        rows = load_rows(rows, task.task, **dataset_options)
    else:
        rows = validate_rows(rows, task.task, "evaluation row")
    model, tokenizer = compose(body, pack, task, device=device or default_device())
    seq_len, _ = resolve_seq_len(model.config, seq_len, recorded=task.settings.get("seq_len"))
    return score_model(model, tokenizer, task.task, task.labels, rows, seq_len=seq_len, batch_size=batch_size)


def evaluate_languages(
    store: Store | str | os.PathLike,
    task_name: str,
    languages: Sequence[str],
    data_pattern: str,
    *,
    batch_size: int = 64,
    device=None,
    seq_len: int | None = None,
    **dataset_options,
) -> dict[str, dict]:
    """``{lang: metrics}`` for one task of a store, each language's rows from ``data_pattern``.

    ``data_pattern`` holds ``{lang}``: a file pattern (``test.{lang}.jsonl``) or a named source
    (``bible-genre:{lang}:test``). With ``dataset=NAME`` the string options (e.g. ``config="{lang}"``)
    are formatted instead. ``task_name`` is a task in the store or a task folder.
    """
    store = store if isinstance(store, Store) else Store(store)
    placeholders = (
        [data_pattern]
        if not dataset_options.get("dataset")
        else [v for v in dataset_options.values() if isinstance(v, str)]
    )
    if len(languages) > 1 and not any("{lang}" in p for p in placeholders):
        where = "--data" if not dataset_options.get("dataset") else "--config"
        raise EmbswapError(f"{where} has no {{lang}} placeholder, so every language would read the same rows")
    task = store.task(task_name) if task_name in store.task_names else as_artifact(task_name, TaskModule)
    body = store.body
    results = {}
    for lang in languages:
        options = {k: v.format(lang=lang) if isinstance(v, str) else v for k, v in dataset_options.items()}
        rows = load_rows(data_pattern.format(lang=lang), task.task, **options)
        results[lang] = evaluate(body, store.pack(lang), task, rows, batch_size, device=device, seq_len=seq_len)
    return results


def majority_baseline(train_rows: Sequence[dict], eval_rows: Sequence[dict]) -> dict:
    """Scores of always predicting the most frequent training label (ties: the smallest label)."""
    counts = Counter(row["label"] for row in train_rows)
    if not counts:
        raise EmbswapError("the majority baseline needs training rows")
    top = max(counts.values())
    label = min(k for k, v in counts.items() if v == top)
    golds = [row["label"] for row in eval_rows]
    return {**classification_scores([label] * len(golds), golds), "label": label}
