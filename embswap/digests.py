"""SHA-256 digests that say what a run read: texts, a tokenizer's vocabulary, tensor bytes.

Resume checks compare them (a checkpoint continues only on the same data) and provenance records
them (a diagnostic can tell which packs a task model has already seen).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from .io import tensor_bytes


def texts_sha256(texts: Sequence[str]) -> str:
    """Digest of the texts in order, each followed by a newline."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def vocab_sha256(tokenizer) -> str:
    """Digest of the tokenizer's token strings in id order."""
    items = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256("\n".join(token for token, _ in items).encode("utf-8")).hexdigest()


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Digest of the tensor's bytes (hex, 64 characters)."""
    return hashlib.sha256(tensor_bytes(tensor)).hexdigest()


def embedding_fingerprint(pack) -> str:
    """SHA-256 of the pack's word-embedding bytes: what fine-tuning records in ``trained_with_packs``."""
    return tensor_sha256(pack.word_embeddings)
