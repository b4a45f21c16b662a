"""Fine-tuning batches of a supervised task: any step's batch from (seed, step) alone."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..tasks.heads import encode_classification, pad_features, prepare_qa
from .loop import derive_seed


class TaskBatches:
    """The batch of any step from (seed, step) alone, so a resumed run continues exactly.

    Each epoch is a seeded shuffle of the training units (rows; context windows for QA). With
    several packs the pack of step ``s`` is ``s mod (number of packs)``.
    """

    def __init__(
        self,
        units: list[list],
        tokenizers: list,
        task: str,
        labels: Sequence[str],
        batch_size: int,
        seq_len: int,
        seed: int,
    ):
        self.units, self.tokenizers = units, tokenizers
        self.task, self.batch_size, self.seq_len, self.seed = task, batch_size, seq_len, seed
        self.label_index = {label: i for i, label in enumerate(labels)}
        self._orders: dict[tuple[int, int], list[int]] = {}

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.units[0]) / self.batch_size))

    def pack_of(self, step: int) -> int:
        return step % len(self.units)

    def _order(self, epoch: int, pack: int) -> list[int]:
        key = (epoch, pack)
        if key not in self._orders:
            if len(self._orders) > 2 * len(self.units):
                self._orders.clear()
            # Packs that share the rows (classification) share one shuffle per epoch.
            salt = pack if self.task == "qa" else 0
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "finetune", epoch, salt))
            self._orders[key] = torch.randperm(len(self.units[pack]), generator=generator).tolist()
        return self._orders[key]

    def __call__(self, step: int, process_index: int = 0, num_processes: int = 1) -> dict:
        pack = self.pack_of(step)
        epoch, position = divmod(step, self.steps_per_epoch)
        order = self._order(epoch, pack)
        start = position * self.batch_size
        end = min(start + self.batch_size, len(self.units[0]))  # the last batch of an epoch is short
        chosen = [order[i % len(order)] for i in range(start, end)][process_index::num_processes]
        units = [self.units[pack][i] for i in chosen]
        tokenizer = self.tokenizers[pack]
        if self.task == "qa":
            batch = pad_features(tokenizer, [u[0] for u in units])
            batch["start_positions"] = torch.tensor([u[1] for u in units], dtype=torch.long)
            batch["end_positions"] = torch.tensor([u[2] for u in units], dtype=torch.long)
        else:
            batch = encode_classification(tokenizer, units, self.seq_len)
            batch["labels"] = torch.tensor([self.label_index[u["label"]] for u in units], dtype=torch.long)
        batch["pack_index"] = pack
        return batch


def qa_units(tokenizer, rows: Sequence[dict], seq_len: int) -> list[tuple]:
    features = prepare_qa(tokenizer, rows, seq_len)
    return list(zip(features.inputs, features.start_positions, features.end_positions))
