"""Hooks fine-tuning puts on the word embeddings: trainable special rows, training noise, and the
switch that re-points the embedding module at one of several packs (see embswap/train/finetune.py)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SpecialRows(nn.Module):
    """The shared special-token rows as one trainable table, written over the word-embedding lookup."""

    def __init__(self, matrix: torch.Tensor, special_ids: Sequence[int]):
        super().__init__()
        ids = sorted(set(int(i) for i in special_ids))
        self.ids = ids
        self.rows = nn.Parameter(matrix[ids].detach().clone())  # [n_special, dim]
        slot = torch.full((max(ids) + 1,), -1, dtype=torch.long)
        slot[torch.tensor(ids)] = torch.arange(len(ids))
        self.register_buffer("slot_of", slot, persistent=False)

    def hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        ids = args[0]
        inside = ids < self.slot_of.shape[0]
        slot = torch.where(inside, self.slot_of[ids.clamp(max=self.slot_of.shape[0] - 1)], -1)
        chosen = self.rows.to(output.dtype)[slot.clamp(min=0)]
        return torch.where((slot >= 0).unsqueeze(-1), chosen, output)

    def as_dict(self) -> dict[int, torch.Tensor]:
        rows = self.rows.detach().cpu()
        return {token_id: rows[i].clone() for i, token_id in enumerate(self.ids)}


def noise_hook(std: float):
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if not module.training:
            return output
        return output + torch.randn_like(output) * std

    return hook


class PackSwitch(nn.Module):
    """Several packs' word-embedding matrices; ``select(k)`` re-points the embedding module at one."""

    def __init__(self, embedding: nn.Embedding, extra: Sequence[torch.Tensor]):
        super().__init__()
        embedding.weight.requires_grad_(False)
        self.embedding = [embedding]  # a list: the module belongs to the model, not to this switch
        self.tables = nn.ParameterList(
            [embedding.weight] + [nn.Parameter(t.detach(), requires_grad=False) for t in extra]
        )
        self.current = 0
        self.counts = [0] * len(self.tables)  # training forwards per pack

    def select(self, index: int) -> None:
        self.embedding[0].weight = self.tables[index]
        self.current = index
