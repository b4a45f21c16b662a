"""Initialising a new language's embedding matrix (and MLM output bias) before step 2.

Rules, applied in this order; every row is set by exactly one and counted under its name:

- ``special``: the shared special tokens always take the reference pack's rows (or a given
  special-row table), so [CLS]/[SEP]/[MASK]/... line up across packs.
- ``dictionary`` (method "dictionary"): a whole-word token whose word a bilingual word list
  translates gets the mean of the reference rows of those translations that are one reference
  token each.
- ``aligned`` (method "aligned"): the parallel text is cut into tokens on both sides and
  word-aligned with eflomal (:mod:`embswap.wordalign`); a token linked to reference tokens gets the
  mean of their rows weighted by link counts (as in trans-tokenization, Remy et al. 2024).
- ``overlap`` (methods "overlap", "dictionary", "subword-mean", "aligned"): a token whose string the
  reference vocabulary has too gets that row, exactly.
- ``subword-mean`` (methods "subword-mean", "aligned"): the token's text is cut by the reference
  tokenizer and gets the mean of those pieces' rows (WordPiece ``##``, SentencePiece ``▁`` and
  byte-level ``Ġ`` markers are translated between the two vocabularies).
- ``random``: normal with the body's ``initializer_range``; output bias 0.

Copied and averaged rows bring their output-bias entries the same way. The rows set from the
reference are the *anchored* rows (``InitResult.anchored``), which step 2 can keep frozen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from .artifacts import Body, LanguagePack
from .choices import INIT_METHODS
from .errors import DataError, IncompatibleArtifactError

RULES = ("special", "dictionary", "aligned", "overlap", "subword-mean", "random")


@dataclass
class InitResult:
    word_embeddings: torch.Tensor  # [vocab, embedding_dim]
    output_bias: torch.Tensor | None  # [vocab]; None for head-less bodies
    counts: dict[str, int]  # rows set by each rule (RULES); they sum to the vocabulary size
    anchored: set[int] = field(default_factory=set)  # rows taken or built from the reference
    method: str = "random"

    def provenance(self) -> dict:
        return {"method": self.method, "counts": dict(self.counts), "anchored_rows": len(self.anchored)}


# ---------------------------------------------------------------------------------------------
# Token strings <-> text, across the three subword marker conventions.


@lru_cache(maxsize=1)
def _byte_tables() -> tuple[dict[int, str], dict[str, int]]:
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    encoder = bytes_to_unicode()
    return encoder, {char: byte for byte, char in encoder.items()}


def _component_type(component) -> str:
    """The JSON ``type`` of a tokenizers component (pre-tokenizer), "" when there is none."""
    if component is None:
        return ""
    try:
        state = json.loads(component.__getstate__())
    except Exception:  # noqa: BLE001 - very old tokenizers: fall back to the repr
        return repr(component)
    if state.get("type") == "Sequence":
        return " ".join(item.get("type", "") for item in state.get("pretokenizers", []))
    return state.get("type", "")


class _Vocabulary:
    """A tokenizer's vocabulary and how its token strings mark word starts and continuations."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.vocab: dict[str, int] = tokenizer.get_vocab()
        backend = tokenizer.backend_tokenizer
        pre = _component_type(backend.pre_tokenizer)
        self.prefix = getattr(backend.model, "continuing_subword_prefix", None)
        if type(backend.model).__name__ == "WordPiece":
            self.style = "wordpiece"
        elif "ByteLevel" in pre:
            self.style = "bytelevel"
        elif "Metaspace" in pre:
            self.style = "metaspace"
        else:
            self.style = "plain"
        self.unk_id = tokenizer.unk_token_id

    def surface(self, token: str) -> tuple[str, bool] | None:
        """(text, starts a word) of a token string; None for a byte piece that is not text."""
        if self.style == "wordpiece" and self.prefix and token.startswith(self.prefix):
            return token[len(self.prefix) :], False
        if self.style == "metaspace":
            return (token[1:], True) if token.startswith("▁") else (token, False)
        if self.style == "bytelevel":
            _, decoder = _byte_tables()
            try:
                text = bytes(decoder[ch] for ch in token).decode("utf-8")
            except (KeyError, UnicodeDecodeError):
                return None
            return (text[1:], True) if text.startswith(" ") else (text, False)
        return token, True

    def encode(self, text: str, starts_word: bool) -> list[int] | None:
        """Ids of ``text`` in this vocabulary, as a word start or a continuation; None if unknown."""
        if not text:
            return None
        if not starts_word:
            if self.style == "wordpiece":
                candidate = f"{self.prefix}{text}"
            elif self.style == "bytelevel":
                encoder, _ = _byte_tables()
                candidate = "".join(encoder[b] for b in text.encode("utf-8"))
            else:
                candidate = text
            if candidate in self.vocab:
                return [self.vocab[candidate]]
        query = f" {text}" if self.style == "bytelevel" and starts_word else text
        ids = self.tokenizer(query, add_special_tokens=False)["input_ids"]
        if not ids or (self.unk_id is not None and self.unk_id in ids):
            return None
        return ids


# ---------------------------------------------------------------------------------------------
# Word lists.


def load_dictionary(source) -> dict[str, list[str]]:
    """A word list from a dict, or a ``word<TAB>translation`` file path."""
    if isinstance(source, Mapping):
        return {str(k): [str(t) for t in (v if isinstance(v, (list, tuple)) else [v])] for k, v in source.items()}
    from .data.dictionary import read_tsv

    return read_tsv(Path(source))


def _translations(dictionary: dict[str, list[str]], word: str) -> list[str]:
    from .data.dictionary import lookup  # exact form, case variants, then lemma candidates

    return lookup(dictionary, word)


# ---------------------------------------------------------------------------------------------


def _init_std(body: Body) -> float:
    value = body.model_config.get("initializer_range", 0.02)
    return float(value) if isinstance(value, (int, float)) else 0.02


def _body_dtype(body: Body) -> torch.dtype:
    floats = [t.dtype for t in body.tensors.values() if t.is_floating_point()]
    return floats[0] if floats else torch.float32


def initialize_embeddings(
    body: Body,
    tokenizer,
    method: str = "random",
    *,
    reference_pack: LanguagePack | None = None,
    dictionary=None,
    special_rows: Mapping[int, torch.Tensor] | None = None,
    seed: int = 0,
    dictionary_limit: int | None = None,
    token_frequencies: Mapping[int, int] | None = None,
    parallel: Sequence[dict] | None = None,
) -> InitResult:
    """A new matrix (and output bias) for ``tokenizer`` on ``body``; see the module docstring.

    ``dictionary`` is ``{word: [translation, ...]}`` or a TSV path. ``dictionary_limit`` keeps the
    word list to the N most frequent whole-word tokens (by ``token_frequencies`` when given,
    else by token id). Special rows come from ``special_rows`` when given, else the reference.
    ``parallel`` (``[{"source": L1 text, "target": L2 text}, ...]``) feeds method "aligned".
    """
    if method not in INIT_METHODS:
        raise DataError(f"unknown init method {method!r}; expected one of: {', '.join(INIT_METHODS)}")
    if method != "random" and reference_pack is None:
        raise IncompatibleArtifactError(
            f"init {method!r} copies rows from a reference pack; pass one (e.g. --reference-pack STORE/packs/en)"
        )
    if method == "dictionary" and dictionary is None:
        raise DataError("init 'dictionary' needs a word list; pass --dictionary FILE (word<TAB>translation lines)")
    if method == "aligned" and not parallel:
        raise DataError(
            "init 'aligned' word-aligns parallel text; pass --parallel FILE (JSONL source/target, TSV) "
            "or a named source such as bible:4-e"
        )
    if reference_pack is not None and reference_pack.hidden_size != body.embedding_dim:
        raise IncompatibleArtifactError(
            f"the reference pack has {reference_pack.hidden_size}-dimensional rows, the body expects {body.embedding_dim}"
        )
    vocab_size, dim, dtype = len(tokenizer), body.embedding_dim, _body_dtype(body)
    generator = torch.Generator().manual_seed(seed)
    # The whole random matrix is drawn first, so a row's random value does not depend on the others.
    matrix = torch.empty(vocab_size, dim, dtype=torch.float32).normal_(0.0, _init_std(body), generator=generator)
    matrix = matrix.to(dtype)
    has_bias = body.head != "none"
    bias = torch.zeros(vocab_size, dtype=dtype) if has_bias else None
    ref_matrix = reference_pack.word_embeddings.to(dtype) if reference_pack is not None else None
    ref_bias = reference_pack.output_bias if reference_pack is not None else None
    counts = dict.fromkeys(RULES, 0)
    done: set[int] = set()
    anchored: set[int] = set()

    def set_row(
        token_id: int,
        rule: str,
        ref_ids: list[int] | None = None,
        row: torch.Tensor | None = None,
        weights: Mapping[int, int] | None = None,
    ) -> None:
        if weights is not None:  # a weighted mean of reference rows (and of their output biases)
            ids = sorted(weights)
            w = torch.tensor([float(weights[i]) for i in ids])
            w = w / w.sum()
            matrix[token_id] = (w[:, None] * ref_matrix[ids].float()).sum(0).to(dtype)
            if bias is not None and ref_bias is not None:
                bias[token_id] = (w * ref_bias[ids].float()).sum().to(dtype)
        elif ref_ids is not None:
            matrix[token_id] = ref_matrix[ref_ids].mean(0) if len(ref_ids) > 1 else ref_matrix[ref_ids[0]]
            if bias is not None and ref_bias is not None:
                bias[token_id] = ref_bias[ref_ids].to(dtype).mean() if len(ref_ids) > 1 else ref_bias[ref_ids[0]]
        else:
            matrix[token_id] = row.to(dtype)
        counts[rule] += 1
        done.add(token_id)
        anchored.add(token_id)

    # Special tokens: by role, so they line up even if the strings differ.
    for role, token_id in body.special_tokens.items():
        if not 0 <= token_id < vocab_size:
            raise IncompatibleArtifactError(f"special token {role} has id {token_id}, outside the new vocabulary")
        if special_rows is not None and token_id in special_rows:
            set_row(token_id, "special", row=special_rows[token_id])
        elif reference_pack is not None:
            set_row(token_id, "special", ref_ids=[token_id])

    new_vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    ref = _Vocabulary(reference_pack.tokenizer) if reference_pack is not None else None
    new = _Vocabulary(tokenizer) if reference_pack is not None else None

    if method == "dictionary":
        words = load_dictionary(dictionary)
        candidates = []
        for token, token_id in new_vocab:
            surface = new.surface(token)
            if token_id in done or surface is None or not surface[1] or not surface[0].strip():
                continue
            candidates.append((token_id, surface[0]))
        if token_frequencies is not None:
            candidates.sort(key=lambda item: (-token_frequencies.get(item[0], 0), item[0]))
        if dictionary_limit is not None:
            candidates = candidates[:dictionary_limit]
        for token_id, word in candidates:
            ids = []
            for translation in _translations(words, word):
                if " " in translation.strip():
                    continue  # multi-word senses have no single row
                pieces = ref.encode(translation.strip(), starts_word=True)
                if pieces is not None and len(pieces) == 1 and pieces[0] not in ids:
                    ids.append(pieces[0])
            if ids:
                set_row(token_id, "dictionary", ref_ids=ids)

    if method == "aligned":
        from .wordalign import token_translation_counts

        links = token_translation_counts(parallel, reference_pack.tokenizer, tokenizer)
        for _, token_id in new_vocab:
            if token_id not in done and token_id in links:
                set_row(token_id, "aligned", weights=links[token_id])

    if method in ("overlap", "dictionary", "subword-mean", "aligned"):
        for token, token_id in new_vocab:
            if token_id not in done and token in ref.vocab:
                set_row(token_id, "overlap", ref_ids=[ref.vocab[token]])

    if method in ("subword-mean", "aligned"):
        for token, token_id in new_vocab:
            if token_id in done:
                continue
            surface = new.surface(token)
            pieces = ref.encode(*surface) if surface is not None else None
            if pieces:
                set_row(token_id, "subword-mean", ref_ids=pieces)

    counts["random"] = vocab_size - len(done)
    return InitResult(word_embeddings=matrix, output_bias=bias, counts=counts, anchored=anchored, method=method)


def untrained_pack(
    body: Body,
    tokenizer,
    language: str,
    method: str = "random",
    *,
    reference_pack: LanguagePack | None = None,
    seed: int = 0,
    **options,
) -> LanguagePack:
    """The control a trained pack is scored against: ``tokenizer`` with the matrix (and output bias)
    ``method`` starts step 2 from, never trained. ``options`` go to :func:`initialize_embeddings`."""
    start = initialize_embeddings(body, tokenizer, method, reference_pack=reference_pack, seed=seed, **options)
    return LanguagePack(
        language=language,
        tokenizer=tokenizer,
        word_embeddings=start.word_embeddings,
        output_bias=start.output_bias,
        body_fingerprint=body.fingerprint,
        provenance={"init": method, "trained": False},
    )
