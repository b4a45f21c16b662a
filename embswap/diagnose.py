"""The swap diagnostic (docs/method.md#the-basis-problem): what does swapping embeddings lose within one language?

Self-transfer re-learns the L1 pack on the frozen body with the step-2 procedure, swaps it into the
L1 task model and scores it beside the original pack. No L2 can be expected to do better, so the
ratio separates what the swap itself costs from what language distance costs. The token alignment
says how close the re-learned vectors came to the originals: both packs read the same frozen body,
so their rows live in one space and are compared directly (no rotation is fitted).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .artifacts import LanguagePack, TaskModule
from .compose import as_artifact
from .digests import embedding_fingerprint
from .errors import DataError, EmbswapError
from .evaluate import evaluate
from .store import Store
from .tasks.data import load_rows, validate_rows

RELEARNED_SUFFIX = "-relearned"
_SIMILARITY_CHUNK = 1024  # rows of the [tokens, tokens] cosine matrix computed at once
_MIN_DIGEST_CHARS = 16  # finetune's older robust_packs digests are 16 hex characters


# --------------------------------------------------------------------------- token alignment


def frequent_token_ids(tokenizer, top_k: int, texts: Sequence[str] | None = None) -> list[int]:
    """The ``top_k`` most frequent non-special ids in ``texts`` (ties: lower id first).

    Without texts: the first ``top_k`` non-special ids of the vocabulary.
    """
    special = set(tokenizer.all_special_ids)
    if not texts:
        return sorted(i for i in tokenizer.get_vocab().values() if i not in special)[:top_k]
    counts = Counter(i for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"] for i in ids)
    ranked = sorted((i for i in counts if i not in special), key=lambda i: (-counts[i], i))
    return ranked[:top_k]


def _matched_rows(original: LanguagePack, relearned: LanguagePack, ids: list[int]) -> tuple[list[int], list[int]]:
    """Rows of the same token string in both packs (their vocabularies may differ in content and order)."""
    vocab = relearned.tokenizer.get_vocab()
    special = set(relearned.tokenizer.all_special_ids)
    left, right = [], []
    for token_id, token in zip(ids, original.tokenizer.convert_ids_to_tokens(ids)):
        other = vocab.get(token)
        if other is not None and other not in special and other < relearned.vocab_size:
            left.append(token_id)
            right.append(other)
    return left, right


def _finds_itself(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many rows of ``a`` have their own index as nearest row of ``b`` (unit rows: cosine)."""
    hits = 0
    for start in range(0, a.shape[0], _SIMILARITY_CHUNK):
        nearest = (a[start : start + _SIMILARITY_CHUNK] @ b.T).argmax(dim=1)
        hits += int((nearest == torch.arange(start, start + nearest.shape[0])).sum())
    return hits


def token_alignment(
    original: LanguagePack,
    relearned: LanguagePack,
    *,
    top_k: int = 1000,
    frequency_texts: Sequence[str] | None = None,
) -> dict:
    """How close the re-learned vectors of frequent tokens are to the original ones.

    Tokens are the ``top_k`` most frequent in ``frequency_texts`` (read with the original tokenizer;
    without texts: the first ``top_k`` non-special ids), matched across packs by token string.
    Returns ``mean_cosine`` (of matched pairs, rounded to 6 decimals), ``finds_itself_percent`` (the
    share of tokens whose nearest re-learned row, by cosine among the matched tokens, is their own),
    ``matched`` and ``candidates`` (tokens considered). Exact and deterministic (float64).
    """
    if top_k < 1:
        raise DataError(f"top_k is {top_k}; compare at least 1 token")
    ids = frequent_token_ids(original.tokenizer, top_k, frequency_texts)
    left, right = _matched_rows(original, relearned, ids)
    if not left:
        raise EmbswapError(
            f"none of the {len(ids)} frequent tokens of pack {original.language!r} is in the re-learned pack's "
            "vocabulary; the alignment compares two packs of the same language"
        )
    a = F.normalize(original.word_embeddings[left].double(), dim=1)  # [matched, dim]
    b = F.normalize(relearned.word_embeddings[right].double(), dim=1)
    cosines = (a * b).sum(dim=1)
    return {
        "mean_cosine": round(float(cosines.mean()), 6),
        "finds_itself_percent": round(100.0 * _finds_itself(a, b) / len(left), 6),
        "matched": len(left),
        "candidates": len(ids),
    }


# --------------------------------------------------------------------------- self-transfer


def _recorded_fingerprints(task: TaskModule) -> list[tuple[str, str]]:
    """(name, fingerprint or digest prefix) of every pack the task's fine-tuning recorded.

    ``trained_with_packs`` holds full SHA-256 fingerprints; tasks written before it existed name
    only their robust packs, in ``robust_packs`` with 16-character digests.
    """
    entries = list(task.provenance.get("trained_with_packs") or []) + list(task.provenance.get("robust_packs") or [])
    found = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        digest = entry.get("fingerprint") or entry.get("digest")
        if isinstance(digest, str) and len(digest) >= _MIN_DIGEST_CHARS:
            found.append((str(entry.get("name") or entry.get("language") or "?"), digest))
    return found


def check_unseen(task: TaskModule, pack: LanguagePack) -> None:
    """Refuse a pack the task was fine-tuned with: swapping it in would not measure the swap."""
    fingerprint = embedding_fingerprint(pack)
    for name, recorded in _recorded_fingerprints(task):
        if fingerprint.startswith(recorded):
            raise EmbswapError(
                f"the re-learned pack ({pack.language!r}, embeddings {fingerprint[:12]}) is pack {name!r} that the "
                "task was fine-tuned with; self-transfer needs a pack the task never saw: re-learn one under a new name"
            )


def _row_texts(rows: Sequence[dict]) -> list[str]:
    keys = ("text", "text_pair", "question", "context")
    return [row[k] for row in rows for k in keys if isinstance(row.get(k), str)]


def _primary_metric(metrics: dict) -> str:
    return "accuracy" if "accuracy" in metrics else "f1"


def self_transfer(
    body,
    l1_pack,
    task,
    rows,
    relearned_pack,
    *,
    top_k: int = 1000,
    frequency_texts: Sequence[str] | None = None,
    batch_size: int = 64,
    device=None,
) -> dict:
    """Score the L1 task model with its own pack and with a re-learned L1 pack swapped in.

    ``rows`` are task rows, a file or a named source (``bible-genre:en:test``); artifacts may be
    objects or folders. Returns ``metric`` (accuracy, or F1 for QA), ``l1`` and ``self_transfer``
    (the metrics of :func:`embswap.evaluate.evaluate`), ``ratio`` (after / before) and
    ``alignment`` (:func:`token_alignment` over the rows' text unless ``frequency_texts`` is given).
    Refuses a re-learned pack the task was fine-tuned with.
    """
    task = as_artifact(task, TaskModule)
    l1_pack = as_artifact(l1_pack, LanguagePack)
    relearned_pack = as_artifact(relearned_pack, LanguagePack)
    check_unseen(task, relearned_pack)
    if isinstance(rows, (str, os.PathLike)):
        rows = load_rows(rows, task.task)
    else:
        rows = validate_rows(rows, task.task, "evaluation row")
    before = evaluate(body, l1_pack, task, rows, batch_size, device=device)
    after = evaluate(body, relearned_pack, task, rows, batch_size, device=device)
    metric = _primary_metric(before)
    texts = frequency_texts if frequency_texts is not None else _row_texts(rows)
    return {
        "metric": metric,
        "l1": before,
        "self_transfer": after,
        "ratio": after[metric] / max(before[metric], 1e-9),
        "alignment": token_alignment(l1_pack, relearned_pack, top_k=top_k, frequency_texts=texts),
    }


# --------------------------------------------------------------------------- re-learning the L1 pack


def relearned_name(language: str) -> str:
    return f"{language}{RELEARNED_SUFFIX}"


def _identity_pairs(texts: Sequence[str]) -> list[dict]:
    # The parallel text of an L1 sentence in L1 is itself: the teacher reads it with the original pack.
    return [{"source": t, "target": t} for t in texts]


def relearn_pack(
    store: Store | str | os.PathLike,
    texts: Sequence[str] | None,
    *,
    language: str = "en",
    name: str | None = None,
    objective: str = "mlm",
    init: str = "random",
    max_steps: int = 400,
    max_minutes: float | None = None,
    seed: int = 0,
    vocab_size: int | None = None,
    seq_len: int | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    progress: bool = True,
    device: str | None = None,
    data_description: object = None,
) -> LanguagePack:
    """The store's re-learned ``language`` pack (``name``, default ``en-relearned``); trained if absent.

    Training is step 2 unchanged (:func:`embswap.train.transfer.run_transfer`, body frozen): a new
    tokenizer of ``vocab_size`` (default: the original pack's) trained on ``texts``, then the pack.
    ``align`` objectives pull each sentence onto the original pack's reading of the same sentence.
    ``init="overlap"`` copies the original rows of shared tokens, so the alignment starts at 1:
    ``random`` (the default) measures what the procedure learns. An interrupted run resumes.
    """
    from .train.tokenizer import train_tokenizer
    from .train.transfer import TransferConfig, run_transfer, tokenizer_for_run

    store = store if isinstance(store, Store) else Store(store)
    name = name or relearned_name(language)
    output = store.pack_path(name)
    if output.exists():
        return store.pack(name)
    texts = [t for t in (texts or []) if t and t.strip()]
    if not texts:
        raise DataError(f"store {store.path} has no pack {name!r}; give L1 text to re-learn it (e.g. --text bible:en)")
    body, original = store.body, store.pack(language)

    def new_tokenizer():
        size = vocab_size or len(original.tokenizer)
        return train_tokenizer(texts, size, family=body.family, special_ids=body.special_tokens)

    aligned = "align" in objective.split("+")
    options = {"parallel": _identity_pairs(texts), "parallel_description": "identity pairs"} if aligned else {}
    tokenizer = tokenizer_for_run(output, new_tokenizer, resume=True, device=device)
    outcome = run_transfer(
        body,
        tokenizer,
        texts,
        TransferConfig(
            language=language,
            init=init,
            objective=objective,
            objective_options=options,
            max_steps=max_steps,
            max_minutes=max_minutes,
            seq_len=seq_len,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            progress=progress,
            device=device,
        ),
        output=output,
        reference_pack=original,
        resume=True,
        data_description={"mlm": data_description, "self_transfer_of": language},
    )
    return outcome.pack


__all__ = [
    "embedding_fingerprint",
    "frequent_token_ids",
    "token_alignment",
    "check_unseen",
    "self_transfer",
    "relearn_pack",
    "relearned_name",
]
