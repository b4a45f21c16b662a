"""Cross-lingual classification through sentence embeddings: a linear probe.

A logistic-regression probe is trained on L1 sentence vectors (body + L1 pack) and applied
unchanged to L2 vectors (body + L2 pack): if the pack put L2 sentences where the body puts their
translations, the probe transfers. Scores (percent) sit beside the majority class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..artifacts import TaskModule
from ..compose import compose
from ..errors import DataError
from .metrics import classification_scores

DEFAULT_WEIGHT_DECAY = 1e-4


@dataclass
class LinearProbe:
    """Softmax regression over sentence vectors: ``labels[argmax(vectors @ weight.T + bias)]``."""

    labels: list[str]
    weight: torch.Tensor  # [classes, hidden]
    bias: torch.Tensor  # [classes]

    def predict(self, vectors: torch.Tensor) -> list[str]:
        logits = vectors.float() @ self.weight.T + self.bias
        return [self.labels[i] for i in logits.argmax(-1).tolist()]

    def score(self, vectors: torch.Tensor, labels: Sequence[str]) -> dict:
        """Accuracy, macro-F1 (percent) and n of the probe on labelled vectors."""
        return classification_scores(self.predict(vectors), list(labels))


def train_probe(
    vectors: torch.Tensor, labels: Sequence[str], *, weight_decay: float = DEFAULT_WEIGHT_DECAY, max_iter: int = 200
) -> LinearProbe:
    """Full-batch L-BFGS on cross-entropy + ``weight_decay * ||W||^2`` from zeros: no randomness."""
    if vectors.ndim != 2 or vectors.shape[0] != len(labels) or not labels:
        raise DataError(
            f"a probe needs one label per vector; got {tuple(vectors.shape)} vectors and {len(labels)} labels"
        )
    names = sorted(set(labels))
    if len(names) < 2:
        raise DataError(f"a probe needs at least two classes; the training rows only have {names}")
    x = vectors.float()
    y = torch.tensor([names.index(label) for label in labels])
    weight = torch.zeros(len(names), x.shape[1], requires_grad=True)
    bias = torch.zeros(len(names), requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.T + bias, y) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return LinearProbe(labels=names, weight=weight.detach(), bias=bias.detach())


def probe_transfer(
    body,
    source_pack,
    target_pack,
    task: TaskModule,
    train_rows: Sequence[dict],
    test_rows: Sequence[dict],
    *,
    source_test_rows: Sequence[dict] | None = None,
) -> dict:
    """Train a probe on ``train_rows`` read with the L1 pack, score it on ``test_rows`` read with the L2 pack.

    Rows are ``{"text", "label"}`` (e.g. :func:`embswap.data.bible.genre_examples`). Returns
    ``{"zero_shot", "majority", "n_train"}`` and, with ``source_test_rows``, ``"in_language"`` (the
    same probe on L1 test rows: the ceiling of the transfer). Metrics in percent.
    """
    from ..evaluate import majority_baseline
    from .sentence import encode

    source_model, source_tok = compose(body, source_pack, task)
    probe = train_probe(
        encode(source_model, source_tok, [r["text"] for r in train_rows], task.settings),
        [r["label"] for r in train_rows],
    )
    unknown = sorted({r["label"] for r in test_rows} - set(probe.labels))
    if unknown:
        raise DataError(f"test labels {unknown} never occur in the probe's training rows ({probe.labels})")
    result = {"n_train": len(train_rows), "majority": majority_baseline(train_rows, test_rows)}
    if source_test_rows is not None:
        vectors = encode(source_model, source_tok, [r["text"] for r in source_test_rows], task.settings)
        result["in_language"] = probe.score(vectors, [r["label"] for r in source_test_rows])
    del source_model
    target_model, target_tok = compose(body, target_pack, task)
    vectors = encode(target_model, target_tok, [r["text"] for r in test_rows], task.settings)
    result["zero_shot"] = probe.score(vectors, [r["label"] for r in test_rows])
    return result
