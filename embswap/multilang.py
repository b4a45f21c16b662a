"""One body, several language packs: switch language without reloading, or mix languages in a batch.

All packs' rows live in one embedding table; a language is an offset into it. Switching sets an
offset (and re-points the tied output layer at the language's rows) and copies no weights.

``table_dtype=torch.bfloat16`` (or float16) keeps that table in half precision: rows are cast to
the model's precision as they are looked up (and, for a masked LM's output layer, as it computes),
so a model serves many languages in about half the memory, with outputs equal to those of packs
stored in that precision (``LanguagePack.to``). ``table_dtype=torch.int8`` keeps a quarter: each row
is stored as int8 with its own float32 scale (absmax / 127), multiplied back in as rows are read;
outputs equal those of the pack with its matrix replaced by ``dequantize_rows(*quantize_rows(m))``
(``int8_pack``). Output biases and position tables stay in the model's precision (they are small).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from . import langid
from .architectures import max_input_tokens, output_layer, position_embeddings, word_embeddings
from .artifacts import Body, LanguagePack, TaskModule, check_compatible
from .compose import as_artifact, build_empty_model, composed_state_dict, special_rows_applied
from .errors import EmbswapError, IncompatibleArtifactError
from .safety import check_representable, dtype_name
from .store import Store


def quantize_rows(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 rows, float32 scales of shape (rows, 1)): each row divided by its absmax / 127 and rounded.
    An all-zero row gets scale 1 (it stays zero)."""
    matrix = matrix.float()
    scales = matrix.abs().amax(dim=1, keepdim=True) / 127.0
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    return torch.round(matrix / scales).clamp_(-127, 127).to(torch.int8), scales


def dequantize_rows(rows: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The values an int8 table serves: ``rows`` times their scales, in ``dtype``."""
    return rows.to(dtype) * scales.to(dtype)


def int8_pack(pack: LanguagePack) -> LanguagePack:
    """The pack as an int8 table serves it: its matrix quantized and multiplied back (a copy)."""
    matrix = pack.word_embeddings
    return dataclasses.replace(
        pack,
        word_embeddings=dequantize_rows(*quantize_rows(matrix), dtype=matrix.dtype),
        provenance={**pack.provenance, "served_as": "int8 rows"},
    )


class LanguageEmbedding(nn.Embedding):
    """Every loaded language's word embeddings in one table; ``offsets`` selects rows per example.

    ``output_dtype``: the precision looked-up rows are cast to (for a table kept in half precision or
    int8); ``scales``: per-row factors of an int8 table, applied after the cast.
    """

    scales: torch.Tensor | None  # a buffer (register_buffer below), declared for type checkers

    def __init__(
        self, table: torch.Tensor, output_dtype: torch.dtype | None = None, scales: torch.Tensor | None = None
    ):
        # An int8 table cannot require gradients: serving tables are frozen then.
        super().__init__(table.shape[0], table.shape[1], _weight=table, _freeze=scales is not None)
        self.offsets: torch.Tensor = torch.zeros((), dtype=torch.long)
        self.output_dtype = output_dtype
        self.register_buffer("scales", scales, persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        ids = input_ids + self.offsets
        rows = F.embedding(ids, self.weight)
        rows = rows if self.output_dtype is None else rows.to(self.output_dtype)
        return rows if self.scales is None else rows * F.embedding(ids, self.scales)


class UpcastingLinear(nn.Linear):
    """A masked LM's vocabulary projection over half-precision or int8 table rows, cast to the input's
    precision per call (and scaled, for int8): the logits of rows upcast once, without keeping that
    full-precision copy."""

    scales: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.dtype)
        return F.linear(x, weight if self.scales is None else weight * self.scales.to(x.dtype), self.bias)


def _upcasting_output(model, output: nn.Linear) -> UpcastingLinear:
    """Put an UpcastingLinear (sharing the bias) where the model keeps its output layer."""
    layer = UpcastingLinear(output.in_features, output.out_features, bias=False, device="meta")
    layer.bias = output.bias
    model.set_output_embeddings(layer)
    return layer


class MultiLanguageModel(nn.Module):
    """A transformers model whose language is chosen per call (``set_language`` or per example).

    ``language``: the starting language, or "auto": ``tokenize(texts)`` then identifies each text's
    language offline (``pip install "embswap[langid]"``, :mod:`embswap.langid`) and routes it to that
    pack when the identifier's confidence reaches ``min_confidence``; other texts go to
    ``fallback_language`` (the body's own language, the L1 pack, when loaded; else the first
    language) and are counted in :meth:`route`'s Routing.
    """

    def __init__(
        self,
        body: Body,
        packs: dict[str, LanguagePack],
        task: TaskModule | None = None,
        *,
        table_dtype: torch.dtype | None = None,
        language: str | None = None,
        min_confidence: float = langid.DEFAULT_MIN_CONFIDENCE,
    ):
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
        # The model computes in its own precision (the body's); packs saved in another are cast to it,
        # or, with table_dtype, the table keeps that precision and rows are cast as they are read.
        compute = word_embeddings(self.model).weight.dtype
        stored = table_dtype or compute
        if not (stored.is_floating_point or stored == torch.int8):
            raise EmbswapError(f"table_dtype must be a floating-point dtype or torch.int8, got {stored}")
        tables: list[torch.Tensor] = []
        scales: list[torch.Tensor] = []
        biases: list[torch.Tensor | None] = []
        self._ranges: dict[str, tuple[int, int]] = {}
        start = 0
        for lang, pack in packs.items():
            matrix = special_rows_applied(pack, task)
            _check_table_range(pack, matrix, stored)
            if stored == torch.int8:
                rows, row_scales = quantize_rows(matrix)
                tables.append(rows)
                scales.append(row_scales.to(compute))
            else:
                tables.append(matrix.to(stored))
            biases.append(_through(pack.output_bias, stored, compute))
            self._ranges[lang] = (start, start + pack.vocab_size)
            start += pack.vocab_size
        self.embedding = LanguageEmbedding(
            torch.cat(tables),
            output_dtype=compute if stored != compute else None,
            scales=torch.cat(scales) if scales else None,
        )
        del tables, scales
        self.model.set_input_embeddings(self.embedding)
        self._output = output_layer(self.model) if task is None and body.head == "mlm" else None
        if self._output is not None and self.embedding.output_dtype is not None:
            self._output = _upcasting_output(self.model, self._output)
        self._bias = nn.Parameter(torch.cat(_output_biases(packs, biases))) if self._output is not None else None
        self._positions = {
            lang: _through(p.position_embeddings, stored, compute)
            for lang, p in packs.items()
            if p.position_embeddings is not None
        }
        self._base_positions = None
        self._position_table = position_embeddings(self.model)
        if self._position_table is not None:
            self._base_positions = self._position_table.weight
        self._switches: dict[str, dict] = {}  # per language: what a switch sets, built on first use
        self.language: str | None = None
        self.set_language(self.languages[0] if language in (None, "auto") else language)
        self.fallback_language = _l1_language(body, packs)
        self.min_confidence = min_confidence
        self.default_languages = "auto" if language == "auto" else None
        if language == "auto":
            known = set(langid.supported_languages())  # fails here, not at the first batch, without the extra
            unknown = [lang for lang in self.languages if langid.primary_code(lang) not in known]
            if unknown:
                langid.logger.warning(
                    "the language identifier does not know %s: their text goes to the fallback pack %r",
                    ", ".join(unknown),
                    self.fallback_language,
                )

    def _switch_state(self, language: str) -> dict:
        start, end = self._ranges[language]
        state: dict = {"offsets": torch.tensor(start, device=self.embedding.weight.device)}
        if self._output is not None and self._bias is not None:  # views: nothing is copied (both set or neither)
            state["weight"] = nn.Parameter(self.embedding.weight[start:end], requires_grad=False)
            state["bias"] = nn.Parameter(self._bias[start:end], requires_grad=False)
            if self.embedding.scales is not None:
                state["scales"] = self.embedding.scales[start:end]
        if self._position_table is not None and self._base_positions is not None:
            table = self._positions.get(language)
            state["positions"] = nn.Parameter(table, requires_grad=False) if table is not None else self._base_positions
        return state

    def set_language(self, language: str) -> None:
        """Make ``language`` the current one: O(1), no weights copied."""
        state = self._switches.get(language)
        if state is None:
            if language not in self._ranges:
                raise EmbswapError(f"language {language!r} is not loaded; loaded: {', '.join(self.languages)}")
            state = self._switches[language] = self._switch_state(language)
        self.embedding.offsets = state["offsets"]
        # Parameters go straight into the modules' parameter dicts: nn.Module.__setattr__ would cost
        # more than the rest of the switch.
        if self._output is not None:
            self._output._parameters["weight"] = state["weight"]
            self._output._parameters["bias"] = state["bias"]
            if "scales" in state:
                self._output.scales = state["scales"]
        if self._position_table is not None and "positions" in state:  # positions are set only with a table
            self._position_table._parameters["weight"] = state["positions"]
        self.language = language

    def _apply(self, fn, recurse=True):
        # .to(device) / .half() move the tables: views prepared for switching would point at the old ones.
        result = super()._apply(fn, recurse)
        self._switches = {}
        if self.language is not None:
            self.set_language(self.language)
        return result

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
            raise EmbswapError(
                "packs with their own position embeddings (+pos) cannot share a batch: batch them per language"
            )
        return torch.tensor([self._ranges[lang][0] for lang in languages]).unsqueeze(1)

    def _check_ids(self, input_ids: torch.Tensor, languages: Sequence[str]) -> None:
        """Every id lies in its own language's rows (``languages``: one per example, or one for all):
        past them the shared table holds the next language's rows, which a lookup would read without
        an error (a model with one pack raises IndexError)."""
        if input_ids.numel() == 0:
            return
        sizes = [self._ranges[lang][1] - self._ranges[lang][0] for lang in languages]
        low, high = input_ids.amin(dim=-1).reshape(-1), input_ids.amax(dim=-1).reshape(-1)
        limits = torch.tensor(sizes, device=high.device)
        bad = ((low < 0) | (high >= limits)).nonzero()
        if bad.numel():
            row = int(bad[0, 0])
            which = row if len(sizes) > 1 else 0
            value = int(low[row]) if int(low[row]) < 0 else int(high[row])
            raise EmbswapError(
                f"input id {value} (example {row}) is outside language {languages[which]!r}'s vocabulary of "
                f"{sizes[which]} tokens; tokenize each text with its own language's tokenizer (MultiLanguageModel.tokenize)"
            )

    def forward(self, input_ids: torch.Tensor, languages: Sequence[str] | None = None, **kwargs):
        """Run the model; ``languages`` tags each example, or is one language for all (default: the current one)."""
        if languages == "auto":
            raise EmbswapError(
                '"auto" routes text, not ids: batch = model.tokenize(texts, "auto"), then model(**batch)'
            )
        if isinstance(languages, str):
            languages = [languages] * input_ids.shape[0]
        if languages is None:
            assert self.language is not None  # set in __init__
            self._check_ids(input_ids, [self.language])
            return self.model(input_ids=input_ids, **kwargs)
        if len(languages) != input_ids.shape[0]:
            raise EmbswapError(f"got {len(languages)} language tags for a batch of {input_ids.shape[0]} examples")
        if len(set(languages)) == 1:
            self.set_language(languages[0])
            self._check_ids(input_ids, languages[:1])
            return self.model(input_ids=input_ids, **kwargs)
        offsets = self._offsets_for(languages)
        self._check_ids(input_ids, list(languages))
        previous = self.embedding.offsets
        self.embedding.offsets = offsets
        try:
            return self.model(input_ids=input_ids, **kwargs)
        finally:
            self.embedding.offsets = previous

    def route(self, texts: Sequence[str]) -> langid.Routing:
        """Identify each text's language: its pack when loaded and identified with confidence at least
        ``min_confidence``, else ``fallback_language`` (counted in ``Routing.fallback`` and logged)."""
        return langid.route(texts, self.languages, self.fallback_language, min_confidence=self.min_confidence)

    def tokenize(
        self,
        texts: Sequence[str],
        languages: Sequence[str] | str | None = None,
        text_pairs=None,
        max_length: int | None = None,
    ) -> dict:
        """Tokenize each text with its own language's tokenizer and pad with the shared pad id.

        ``languages``: one per text, one for all, or "auto" (:meth:`route`; the result then also holds
        the routed ``languages``, so ``model(**batch)`` runs each text with its pack). None: the
        model's default ("auto" when loaded with ``language="auto"``, else the current language).
        Texts are cut to ``max_length`` tokens (None: what the body reads, at most 512).
        """
        languages = self.default_languages if languages is None else languages
        routed = languages == "auto"
        if routed:
            languages = self.route(texts).languages
        elif languages is None or isinstance(languages, str):
            current = languages or self.language
            assert current is not None  # self.language is set in __init__
            languages = [current] * len(texts)
        if len(languages) != len(texts):
            raise EmbswapError(f"got {len(languages)} language tags for {len(texts)} texts")
        unknown = sorted(set(languages) - set(self.tokenizers))
        if unknown:
            raise EmbswapError(f"languages {unknown} are not loaded; loaded: {', '.join(self.languages)}")
        limit = max_input_tokens(self.model.config)
        if max_length is None:
            max_length = min(512, limit or 512)
        elif limit is not None and max_length > limit:
            raise EmbswapError(
                f"max_length {max_length} is longer than the body's {limit} positions; give {limit} or less"
            )
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
        batch = {"input_ids": ids, "attention_mask": mask}
        return {**batch, "languages": list(languages)} if routed else batch


def _check_table_range(pack: LanguagePack, matrix: torch.Tensor, stored: torch.dtype) -> None:
    """The pack's values stay finite in the table's precision (float16 ends at 65504)."""
    if stored == torch.int8:  # rows are scaled into int8 range, the scales stay in the model's precision
        return
    tensors = {
        "word_embeddings": matrix,
        "output_bias": pack.output_bias,
        "position_embeddings": pack.position_embeddings,
    }
    check_representable(
        tensors,
        stored,
        owner=f"pack {pack.language!r}",
        precision=f"a {dtype_name(stored)} table",
        advice="use table_dtype=torch.bfloat16 or the model's own precision",
        error=IncompatibleArtifactError,
    )


def _l1_language(body: Body, packs: dict[str, LanguagePack]) -> str:
    """The loaded pack of the body's own language: the one it was split (or pretrained) with, as the body's
    provenance or the split-off pack records it (embswap/split.py, embswap/train/pretrain.py); else the first."""
    recorded = [body.provenance.get("language"), *(body.provenance.get("languages") or [])[:1]]
    recorded += [pack.language for pack in packs.values() if pack.provenance.get("init") == "split"]
    for language in filter(None, recorded):
        named = [name for name in packs if name == language] or [
            name for name, pack in packs.items() if pack.language == language
        ]
        if named:
            return named[0]
    return next(iter(packs))


class _Options(TypedDict):
    table_dtype: torch.dtype | None
    language: str | None
    min_confidence: float


def _output_biases(packs: dict[str, LanguagePack], biases: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """Each pack's output bias, which a masked LM's output layer needs."""
    present = []
    for lang, bias in zip(packs, biases):
        if bias is None:
            raise IncompatibleArtifactError(
                f"pack {lang!r} has no MLM output bias, which the masked-LM model needs; "
                "load it with a task, or train the pack on a body with an MLM head"
            )
        present.append(bias)
    return present


def _through(tensor: torch.Tensor | None, stored: torch.dtype, compute: torch.dtype) -> torch.Tensor | None:
    """A pack tensor as the model uses it when the pack is kept in ``stored`` precision (int8 tables
    quantize only the matrix: biases and positions stay as they are)."""
    if tensor is None:
        return None
    return tensor.to(compute) if stored == torch.int8 else tensor.to(stored).to(compute)


def load(
    source,
    languages: Sequence[str] | None = None,
    task=None,
    *,
    table_dtype: torch.dtype | None = None,
    language: str | None = None,
    min_confidence: float = langid.DEFAULT_MIN_CONFIDENCE,
) -> MultiLanguageModel:
    """Load one body with several packs (and a task) from a store path, a Store, or a dict.

    ``source`` is a store folder / Store, or ``{"body": path, "packs": {lang: path}}``; ``task`` is a
    task name in the store, a path, or a TaskModule. ``table_dtype``, ``language`` ("auto": route each
    text to its pack) and ``min_confidence``: see :class:`MultiLanguageModel`.
    """
    options = _Options(table_dtype=table_dtype, language=language, min_confidence=min_confidence)
    if isinstance(source, dict):
        body = as_artifact(source["body"], Body)
        pack_paths = source["packs"]
        langs = list(languages or pack_paths)
        packs = {lang: as_artifact(pack_paths[lang], LanguagePack) for lang in langs}
        task_module = as_artifact(task, TaskModule) if task is not None else None
        return MultiLanguageModel(body, packs, task_module, **options)
    store = source if isinstance(source, Store) else Store(os.fspath(source))
    langs = list(languages or store.languages)
    packs = {lang: store.pack(lang) for lang in langs}
    if task is None or isinstance(task, TaskModule):
        task_module = task
    elif isinstance(task, str) and task in store.task_names:
        task_module = store.task(task)
    else:
        task_module = as_artifact(task, TaskModule)
    return MultiLanguageModel(store.body, packs, task_module, **options)
