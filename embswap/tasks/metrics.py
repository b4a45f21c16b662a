"""Task metrics, all on a 0-100 scale (as the paper's tables and the official SQuAD script report).

- accuracy and macro-F1 for (pair) classification; macro-F1 averages the per-class F1 over every
  label that occurs in the gold or the predicted labels (a class never predicted scores 0);
- exact match and token F1 for extractive QA with the official SQuAD v1.1 normalisation
  (lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace), taking the best
  score over the gold answers of each question.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

from ..errors import DataError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def _check_lengths(predictions: Sequence, golds: Sequence) -> None:
    if len(predictions) != len(golds):
        raise DataError(f"got {len(predictions)} predictions for {len(golds)} gold labels")


def accuracy(predictions: Sequence[Hashable], golds: Sequence[Hashable]) -> float:
    """Percentage of predictions equal to the gold label (0.0 for no examples)."""
    _check_lengths(predictions, golds)
    if not golds:
        return 0.0
    return 100.0 * sum(p == g for p, g in zip(predictions, golds)) / len(golds)


def macro_f1(
    predictions: Sequence[Hashable], golds: Sequence[Hashable], labels: Sequence[Hashable] | None = None
) -> float:
    """Unweighted mean of per-class F1 (percent) over ``labels`` (default: gold ∪ predicted)."""
    _check_lengths(predictions, golds)
    classes = list(labels) if labels is not None else sorted(set(golds) | set(predictions), key=str)
    if not classes:
        return 0.0
    scores = []
    for cls in classes:
        tp = sum(p == cls and g == cls for p, g in zip(predictions, golds))
        predicted = sum(p == cls for p in predictions)
        actual = sum(g == cls for g in golds)
        # F1 = 2TP / (predicted + actual); a class with neither scores 0 (sklearn's zero_division=0).
        scores.append(2.0 * tp / (predicted + actual) if predicted + actual else 0.0)
    return 100.0 * sum(scores) / len(classes)


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 between one prediction and one gold answer (0..1), as in SQuAD v1.1."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:
        # SQuAD v2 convention for no-answer: both empty is a match, one empty is not.
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Mapping[str, str], golds: Mapping[str, Sequence[str]]) -> dict:
    """``{"exact", "f1", "n"}`` over every question in ``golds`` (a missing prediction scores 0)."""
    if not golds:
        return {"exact": 0.0, "f1": 0.0, "n": 0}
    exact = f1 = 0.0
    for qid, answers in golds.items():
        answers = list(answers) or [""]
        prediction = predictions.get(qid)
        if prediction is None:
            continue
        exact += max(exact_match_score(prediction, a) for a in answers)
        f1 += max(token_f1_score(prediction, a) for a in answers)
    n = len(golds)
    return {"exact": 100.0 * exact / n, "f1": 100.0 * f1 / n, "n": n}


def classification_scores(
    predictions: Sequence[str], golds: Sequence[str], labels: Sequence[str] | None = None
) -> dict:
    """``{"accuracy", "macro_f1", "n"}`` for one set of predictions."""
    return {
        "accuracy": accuracy(predictions, golds),
        "macro_f1": macro_f1(predictions, golds, labels),
        "n": len(golds),
    }
