"""One body, several language packs: switch language without reloading, or mix languages in a batch.

All packs' rows live in one embedding table; a language is an offset into it. Switching sets an
offset (and re-points the tied output layer at the language's rows) and copies no weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .architectures import output_layer, position_embeddings
from .artifacts import Body, LanguagePack, TaskModule, check_compatible
from .compose import as_artifact, build_empty_model, composed_state_dict, special_rows_applied
from .errors import EmbswapError, IncompatibleArtifactError
from .store import Store


class LanguageEmbedding(nn.Embedding):
    """Every loaded language's word embeddings in one table; ``offsets`` selects rows per example."""

    def __init__(self, table: torch.Tensor):
        super().__init__(table.shape[0], table.shape[1], _weight=table)
        self.offsets: torch.Tensor = torch.zeros((), dtype=torch.long)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids + self.offsets, self.weight)


class MultiLanguageModel(nn.Module):
    """A transformers model whose language is chosen per call (``set_language`` or per example)."""

    def __init__(self, body: Body, packs: dict[str, LanguagePack], task: TaskModule | None = None):
        super().__init__()
        if not packs:
            raise EmbswapError("load at least one language pack")
        for pack in packs.values():
            check_compatible(body, pack)
            if pack.adapter_config is not None:
                raise IncompatibleArtifactError(
                    f"pack {pack.language!r} has a language adapter; compose it on its own with embswap.compose()"
                )
        if task is not None:
            check_compatible(body, task)
        self.body_fingerprint = body.fingerprint
        self.languages = list(packs)
        self.tokenizers = {lang: pack.tokenizer for lang, pack in packs.items()}
        self.pad_token_id = body.special_tokens["pad"]
        first = packs[self.languages[0]]
        self.model = build_empty_model(body, first.vocab_size, task)
        self.model.load_state_dict(composed_state_dict(self.model, body, first, task), strict=True)
        self.model.eval()
        tables, biases, self._ranges, start = [], [], {}, 0
        for lang, pack in packs.items():
            tables.append(special_rows_applied(pack, task))
            biases.append(pack.output_bias)
            self._ranges[lang] = (start, start + pack.vocab_size)
            start += pack.vocab_size
        self.embedding = LanguageEmbedding(torch.cat(tables))
        self.model.set_input_embeddings(self.embedding)
        self._output = output_layer(self.model) if task is None and body.head == "mlm" else None
        self._bias = nn.Parameter(torch.cat(biases)) if self._output is not None else None
        self._positions = {lang: p.position_embeddings for lang, p in packs.items() if p.position_embeddings is not None}
        self._base_positions = None
        pos = position_embeddings(self.model)
        if pos is not None:
            self._base_positions = pos.weight
        self.language: str | None = None
        self.set_language(self.languages[0])

    def set_language(self, language: str) -> None:
        """Make ``language`` the current one: O(1), no weights copied."""
        if language not in self._ranges:
            raise EmbswapError(f"language {language!r} is not loaded; loaded: {', '.join(self.languages)}")
        start, end = self._ranges[language]
        self.embedding.offsets = torch.tensor(start)
        if self._output is not None:
            self._output.weight = nn.Parameter(self.embedding.weight[start:end], requires_grad=False)
            self._output.bias = nn.Parameter(self._bias[start:end], requires_grad=False)
        pos = position_embeddings(self.model)
        if pos is not None and self._base_positions is not None:
            table = self._positions.get(language)
            pos.weight = nn.Parameter(table, requires_grad=False) if table is not None else self._base_positions
        self.language = language

    @property
    def tokenizer(self):
        return self.tokenizers[self.language]

    def _offsets_for(self, languages: Sequence[str]) -> torch.Tensor:
        unknown = sorted(set(languages) - set(self._ranges))
        if unknown:
            raise EmbswapError(f"languages {unknown} are not loaded; loaded: {', '.join(self.languages)}")
        if self._output is not None and len(set(languages)) > 1:
            raise EmbswapError("a masked LM predicts one language's vocabulary: batch one language at a time")
        if self._positions and len(set(languages)) > 1:
            raise EmbswapError("packs with their own position embeddings (+pos) cannot share a batch: batch them per language")
        return torch.tensor([self._ranges[lang][0] for lang in languages]).unsqueeze(1)

    def forward(self, input_ids: torch.Tensor, languages: Sequence[str] | None = None, **kwargs):
        """Run the model; ``languages`` tags each example (default: the current language for all)."""
        if languages is None:
            return self.model(input_ids=input_ids, **kwargs)
        if len(languages) != input_ids.shape[0]:
            raise EmbswapError(f"got {len(languages)} language tags for a batch of {input_ids.shape[0]} examples")
        if len(set(languages)) == 1:
            self.set_language(languages[0])
            return self.model(input_ids=input_ids, **kwargs)
        previous = self.embedding.offsets
        self.embedding.offsets = self._offsets_for(languages)
        try:
            return self.model(input_ids=input_ids, **kwargs)
        finally:
            self.embedding.offsets = previous

    def tokenize(self, texts: Sequence[str], languages: Sequence[str], text_pairs=None, max_length: int = 512) -> dict:
        """Tokenize each text with its own language's tokenizer and pad with the shared pad id."""
        rows = []
        for i, (text, lang) in enumerate(zip(texts, languages)):
            pair = text_pairs[i] if text_pairs is not None else None
            rows.append(self.tokenizers[lang](text, pair, truncation=True, max_length=max_length)["input_ids"])
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def load(source, languages: Sequence[str] | None = None, task=None) -> MultiLanguageModel:
    """Load one body with several packs (and a task) from a store path, a Store, or a dict.

    ``source`` is a store folder / Store, or ``{"body": path, "packs": {lang: path}}``; ``task`` is a
    task name in the store, a path, or a TaskModule.
    """
    if isinstance(source, dict):
        body = as_artifact(source["body"], Body)
        pack_paths = source["packs"]
        langs = list(languages or pack_paths)
        packs = {lang: as_artifact(pack_paths[lang], LanguagePack) for lang in langs}
        task_module = as_artifact(task, TaskModule) if task is not None else None
        return MultiLanguageModel(body, packs, task_module)
    store = source if isinstance(source, Store) else Store(os.fspath(source))
    langs = list(languages or store.languages)
    packs = {lang: store.pack(lang) for lang in langs}
    if task is None or isinstance(task, TaskModule):
        task_module = task
    elif isinstance(task, str) and task in store.task_names:
        task_module = store.task(task)
    else:
        task_module = as_artifact(task, TaskModule)
    return MultiLanguageModel(store.body, packs, task_module)
