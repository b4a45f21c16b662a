"""The one table a multi-language pretraining run trains, and its batches in table rows.

Where each language's tokens live in the one table a multi-language run trains. Disjoint: the
shared special tokens (ids 0..k-1 in every tokenizer) keep rows 0..k-1 and language L's ordinary
tokens follow in a block of their own, so a pack (specials, then its block, in its tokenizer's id
order) is exactly what a single-language run of that tokenizer would hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import IncompatibleArtifactError
from .mlm import IGNORE_INDEX, MLMBatches
from .pretrain_config import VOCAB_MODES


def special_prefix(tokenizer, special_ids: dict[str, int]) -> list[str]:
    """The token strings of ids 0..k-1, where k is one past the highest special id."""
    return tokenizer.convert_ids_to_tokens(list(range(max(special_ids.values()) + 1)))


@dataclass
class VocabTable:
    """Token ids of each language's tokenizer -> rows of the shared table, and back to packs."""

    mode: str
    tokenizers: dict[str, object]  # language -> transformers tokenizer
    num_special: int
    starts: dict[str, int]  # language -> table row of its first ordinary token
    size: int

    @classmethod
    def build(cls, tokenizers: dict[str, object], mode: str, special_ids: dict[str, int]) -> VocabTable:
        """Lay out the table; every tokenizer must give the shared special tokens the same ids."""
        if mode not in VOCAB_MODES:
            raise IncompatibleArtifactError(
                f"unknown vocabulary mode {mode!r}; expected one of: {', '.join(VOCAB_MODES)}"
            )
        num_special = max(special_ids.values()) + 1
        languages = list(tokenizers)
        if mode == "joint":
            first = tokenizers[languages[0]]
            if any(tok is not first for tok in tokenizers.values()):
                raise IncompatibleArtifactError("a joint vocabulary needs one tokenizer shared by every language")
            return cls(mode, dict(tokenizers), num_special, {lang: num_special for lang in languages}, len(first))
        reference = special_prefix(tokenizers[languages[0]], special_ids)
        starts, next_row = {}, num_special
        for lang, tok in tokenizers.items():
            if special_prefix(tok, special_ids) != reference:
                raise IncompatibleArtifactError(
                    f"the {lang!r} tokenizer's first {num_special} tokens are {special_prefix(tok, special_ids)}, "
                    f"expected the shared special tokens {reference}; train every tokenizer with the same family"
                )
            starts[lang] = next_row
            next_row += len(tok) - num_special
        return cls(mode, dict(tokenizers), num_special, starts, next_row)

    @property
    def languages(self) -> list[str]:
        return list(self.tokenizers)

    def to_table(self, language: str, ids: torch.Tensor) -> torch.Tensor:
        """Map a language's token ids to table rows (specials stay, ordinary tokens shift)."""
        shift = self.starts[language] - self.num_special
        if shift == 0:
            return ids
        return torch.where(ids >= self.num_special, ids + shift, ids)

    def rows(self, language: str) -> torch.Tensor:
        """Table rows of the language's tokens, in its tokenizer's id order."""
        ordinary = len(self.tokenizers[language]) - self.num_special
        start = self.starts[language]
        return torch.cat([torch.arange(self.num_special), torch.arange(start, start + ordinary)])

    def describe(self) -> dict:
        """What provenance records about the layout."""
        return {
            "mode": self.mode,
            "table_rows": self.size,
            "shared_special_rows": self.num_special,
            "languages": {
                lang: {"vocab_size": len(tok), "first_row": self.starts[lang]} for lang, tok in self.tokenizers.items()
            },
        }


def _pad_to(tensor: torch.Tensor, width: int, value: int) -> torch.Tensor:
    if tensor.shape[1] == width:
        return tensor
    pad = torch.full((tensor.shape[0], width - tensor.shape[1]), value, dtype=tensor.dtype)
    return torch.cat([tensor, pad], dim=1)


def _remap(batch: dict[str, torch.Tensor], table: VocabTable, language: str) -> dict[str, torch.Tensor]:
    """A language's batch in table rows (labels too; the ignore index stays)."""
    return {
        **batch,
        "input_ids": table.to_table(language, batch["input_ids"]),
        "labels": table.to_table(language, batch["labels"]),
    }


class MixedBatches:
    """Each step's batch: ``batch_size / n`` sequences of every language, masked with that language's
    own vocabulary (random replacements never come from another language), in table rows.

    A pure function of (seed, step) like :class:`MLMBatches`, so resuming is exact.
    """

    def __init__(self, sources: dict[str, MLMBatches], table: VocabTable, pad_id: int):
        self.sources = sources
        self.table = table
        self.pad_id = pad_id

    def __call__(self, step: int, process_index: int = 0, num_processes: int = 1) -> dict[str, torch.Tensor]:
        parts = [
            _remap(source(step, process_index, num_processes), self.table, lang)
            for lang, source in self.sources.items()
        ]
        if len(parts) == 1:
            return parts[0]
        width = max(part["input_ids"].shape[1] for part in parts)
        fill = {"input_ids": self.pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        return {key: torch.cat([_pad_to(part[key], width, value) for part in parts]) for key, value in fill.items()}
