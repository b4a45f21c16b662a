"""Masked-language-model data and loss: packing text into sequences, masking, masked-only logits.

The loss runs the encoder on the whole batch but the MLM head only on the masked positions
(about 15 % of the tokens): the vocabulary projection, the largest matrix product of a small
model, shrinks by the same factor, and its result is exactly the full-logit loss at those
positions (the other positions carry no loss anyway). The loss runs under
:class:`~embswap.train.lean.lean_activations`: the same numbers, with less memory held for backward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from ..architectures import mlm_head_logits, word_embeddings
from ..errors import DataError, IncompatibleArtifactError
from .lean import lean_activations
from .loop import derive_seed
from .objectives import LossTerm, ObjectiveContext, register_objective

IGNORE_INDEX = -100
PACKING_MODES = ("pack", "group")


def tokenize_texts(tokenizer, texts: Sequence[str], chunk: int = 2048) -> list[list[int]]:
    """Token ids of every non-empty text, without special tokens."""
    texts = [t for t in texts if t and t.strip()]
    out: list[list[int]] = []
    for start in range(0, len(texts), chunk):
        out.extend(tokenizer(list(texts[start : start + chunk]), add_special_tokens=False)["input_ids"])
    return [ids for ids in out if ids]


def build_sequences(
    token_lists: Sequence[Sequence[int]], seq_len: int, *, cls_id: int, sep_id: int, mode: str = "pack"
) -> list[torch.Tensor]:
    """Training sequences of at most ``seq_len`` tokens, each framed as [CLS] ... [SEP].

    ``pack`` concatenates the texts (a [SEP] between two) and cuts the stream into full
    sequences: no padding at all. ``group`` keeps one text per sequence (long texts cut into
    several) for objectives that need sentence boundaries; batches then group similar lengths.
    """
    if mode not in PACKING_MODES:
        raise DataError(f"unknown packing mode {mode!r}; expected one of: {', '.join(PACKING_MODES)}")
    if seq_len < 8:
        raise DataError(f"seq_len {seq_len} is too short; use at least 8 tokens")
    body = seq_len - 2
    sequences: list[torch.Tensor] = []

    def emit(ids: Sequence[int]) -> None:
        sequences.append(torch.tensor([cls_id, *ids, sep_id], dtype=torch.long))

    if mode == "group":
        for ids in token_lists:
            for start in range(0, len(ids), body):
                emit(ids[start : start + body])
        return sequences
    stream: list[int] = []
    for ids in token_lists:
        if stream:
            stream.append(sep_id)
        stream.extend(ids)
        while len(stream) >= body:
            emit(stream[:body])
            stream = stream[body:]
    if stream:
        emit(stream)
    return sequences


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    never_mask: torch.Tensor,
    mask_id: int,
    replacement_ids: torch.Tensor,
    generator: torch.Generator,
    probability: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose ``probability`` of the maskable tokens; 80 % [MASK], 10 % random, 10 % kept.

    ``never_mask`` holds the special ids (padding included). At least one token of the batch is
    always chosen so that the loss is defined. Returns (inputs, labels with -100 elsewhere).
    """
    maskable = ~torch.isin(input_ids, never_mask)
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & maskable
    if not chosen.any() and maskable.any():
        candidates = maskable.flatten().nonzero().squeeze(1)
        pick = candidates[torch.randint(len(candidates), (1,), generator=generator)]
        chosen.view(-1)[pick] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    roll = torch.rand(input_ids.shape, generator=generator)
    inputs = input_ids.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    random_ids = replacement_ids[torch.randint(len(replacement_ids), input_ids.shape, generator=generator)]
    inputs[swap] = random_ids[swap]
    return inputs, labels


class MLMBatches:
    """The batch of any step from (seed, step) alone: epoch-wise shuffles, fresh masks every step.

    Every process takes every ``num_processes``-th row of the global batch, so the global batch
    (and its masking) does not depend on how many processes train.
    """

    def __init__(
        self,
        sequences: Sequence[torch.Tensor],
        tokenizer,
        *,
        batch_size: int,
        seed: int = 0,
        probability: float = 0.15,
        group_by_length: bool = False,
        label: str = "mlm",
    ):
        if not sequences:
            raise DataError("no text to train on: every line was empty after tokenization")
        if batch_size < 1:
            raise DataError(f"batch size {batch_size} must be at least 1")
        self.sequences = list(sequences)
        self.batch_size = batch_size
        self.seed = seed
        self.probability = probability
        self.group_by_length = group_by_length
        self.label = label
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = tokenizer.mask_token_id
        special = set(tokenizer.all_special_ids) | {self.pad_id}
        self.never_mask = torch.tensor(sorted(special), dtype=torch.long)
        self.replacement_ids = torch.tensor([i for i in range(len(tokenizer)) if i not in special], dtype=torch.long)
        self._epochs: dict[int, list[torch.Tensor]] = {}

    @property
    def batches_per_epoch(self) -> int:
        return max(1, len(self.sequences) // self.batch_size)

    @property
    def num_tokens(self) -> int:
        return sum(len(s) for s in self.sequences)

    def _epoch(self, epoch: int) -> list[torch.Tensor]:
        if epoch not in self._epochs:
            self._epochs = {epoch: self._plan(epoch)}  # one epoch cached: steps only move forward
        return self._epochs[epoch]

    def _plan(self, epoch: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.label, "epoch", epoch))
        n, size = len(self.sequences), self.batch_size
        order = torch.randperm(n, generator=generator)
        if n < size:  # a corpus smaller than one batch: every batch is the whole corpus
            return [order]
        if self.group_by_length:
            lengths = torch.tensor([len(self.sequences[i]) for i in order.tolist()])
            chunk = size * 50
            grouped = []
            for start in range(0, n, chunk):
                part = order[start : start + chunk]
                grouped.append(part[torch.argsort(lengths[start : start + chunk], stable=True)])
            order = torch.cat(grouped)
            batches = [order[i * size : (i + 1) * size] for i in range(n // size)]
            return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return [order[i * size : (i + 1) * size] for i in range(n // size)]

    def __call__(self, step: int, process_index: int = 0, num_processes: int = 1) -> dict[str, torch.Tensor]:
        epoch, index = divmod(step, self.batches_per_epoch)
        rows = self._epoch(epoch)[index]
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.label, "mask", step))
        inputs, attention_mask, labels = self._masked([self.sequences[i] for i in rows.tolist()], generator)
        if num_processes > 1:
            if len(rows) < num_processes:
                raise DataError(
                    f"a batch of {len(rows)} sequences cannot be shared by {num_processes} processes; "
                    "raise the batch size or give more text"
                )
            share = slice(process_index, None, num_processes)
            inputs, attention_mask, labels = inputs[share], attention_mask[share], labels[share]
        return {"input_ids": inputs, "attention_mask": attention_mask, "labels": labels}

    def _masked(self, sequences: Sequence[torch.Tensor], generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """(masked input ids, attention mask, labels) of ``sequences`` padded into one batch."""
        input_ids, attention_mask = self.collate(sequences)
        inputs, labels = mask_tokens(
            input_ids,
            never_mask=self.never_mask,
            mask_id=self.mask_id,
            replacement_ids=self.replacement_ids,
            generator=generator,
            probability=self.probability,
        )
        return inputs, attention_mask, labels

    def collate(self, sequences: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = seq
            attention_mask[row, : len(seq)] = 1
        return input_ids, attention_mask

    def fixed_batches(self, max_batches: int | None = None) -> list[dict[str, torch.Tensor]]:
        """Held-out batches with fixed masks, in corpus order (for comparable eval losses)."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.label, "fixed"))
        out = []
        for start in range(0, len(self.sequences), self.batch_size):
            if max_batches is not None and len(out) >= max_batches:
                break
            inputs, attention_mask, labels = self._masked(self.sequences[start : start + self.batch_size], generator)
            out.append({"input_ids": inputs, "attention_mask": attention_mask, "labels": labels})
        return out


def encoder_states(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Last-layer hidden states [batch, seq, hidden] of a masked LM's encoder."""
    return model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]


def mlm_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of the MLM head evaluated at the masked positions only."""
    with lean_activations(tied_weight=word_embeddings(model).weight):
        hidden = encoder_states(model, batch)  # [B, T, H]
        labels = batch["labels"]
        where = labels != IGNORE_INDEX
        logits = mlm_head_logits(model, hidden[where])  # [M, V]
    return F.cross_entropy(logits.float(), labels[where], reduction=reduction)


def full_logits_mlm_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference the masked-only loss must equal: the model's own full-sequence logits."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=IGNORE_INDEX)


@torch.no_grad()
def mean_mlm_loss(model: PreTrainedModel, batches: Sequence[dict[str, torch.Tensor]], device=None) -> float:
    """Token-weighted mean MLM loss over fixed batches (model in eval mode by the caller)."""
    total, count = 0.0, 0
    for batch in batches:
        if device is not None:
            batch = {k: v.to(device) for k, v in batch.items()}
        total += float(mlm_loss(model, batch, reduction="sum"))
        count += int((batch["labels"] != IGNORE_INDEX).sum())
    return total / max(count, 1)


def _mlm_terms(context: ObjectiveContext) -> list[LossTerm]:
    """Builder of the ``mlm`` objective (the paper's) for :func:`embswap.train.objectives.register_objective`."""
    if context.body.head != "mlm":
        raise IncompatibleArtifactError(
            "the mlm objective needs a body with an MLM head; this body is head-less (a sentence encoder): "
            "use an alignment objective"
        )
    return [LossTerm("mlm", mlm_loss, weight=float(context.options.get("mlm_weight", 1.0)))]


register_objective("mlm", _mlm_terms)
