"""Training a new language's tokenizer with the `tokenizers` library.

The shared special tokens get the ids the body expects (the body's ``special_tokens`` table), so
a new pack's [CLS]/[SEP]/[PAD]/[MASK]/[UNK] rows line up with every other pack's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ..architectures import Family, get_family
from ..errors import DataError

TOKENIZER_MODELS = ("wordpiece", "unigram", "bpe")


def special_token_list(family: Family, special_ids: dict[str, int] | None) -> list[str]:
    """Special tokens in id order, with ``[unusedN]`` fillers so each role lands on its id."""
    if special_ids is None:
        return list(family.special_tokens.values())
    by_id = {token_id: family.special_tokens[role] for role, token_id in special_ids.items()}
    if len(by_id) != len(special_ids):
        raise DataError(f"two special-token roles share an id: {special_ids}")
    return [by_id.get(i, f"[unused{i}]") for i in range(max(by_id) + 1)]


def _backend(model: str, family: Family, lowercase: bool) -> tuple[Tokenizer, type]:
    unk = family.special_tokens["unk"]
    if model == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=unk, max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=False, clean_text=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        return tok, trainers.WordPieceTrainer
    if model == "unigram":
        tok = Tokenizer(models.Unigram())
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        return tok, trainers.UnigramTrainer
    if model == "bpe":
        tok = Tokenizer(models.BPE(unk_token=unk))
        steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if lowercase else [])
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return tok, trainers.BpeTrainer
    raise DataError(f"unknown tokenizer model {model!r}; expected one of: {', '.join(TOKENIZER_MODELS)}")


def _canonical_ids(tok: Tokenizer, *, unpin: Sequence[str] = ()) -> Tokenizer:
    """The same tokenizer with ids that depend only on its tokens: special tokens keep theirs, the
    rest take the remaining ids in sorted order. ``unpin``: tokens the trainer was handed as special
    (:func:`_continuing_pieces`) that become ordinary vocabulary again.

    The trainers learn the same tokens in every run but number some of them (the alphabet) in hash
    order, which differs per process: the same text and seed then gave a body a different
    embedding row per token, and a run could not be repeated. Unigram's ids are its pieces' order
    in a scored list and stay as trained.
    """
    import json

    data = json.loads(tok.to_str())
    vocab = data["model"].get("vocab")
    if not isinstance(vocab, dict):
        return tok
    drop = set(unpin)
    data["added_tokens"] = [entry for entry in data.get("added_tokens", []) if entry["content"] not in drop]
    fixed = {entry["content"]: entry["id"] for entry in data.get("added_tokens", []) if entry["content"] in vocab}
    free = sorted(set(vocab.values()) - set(fixed.values()))
    rest = sorted(token for token in vocab if token not in fixed)
    data["model"]["vocab"] = {**fixed, **dict(zip(rest, free))}
    return Tokenizer.from_str(json.dumps(data))


def _continuing_pieces(tok: Tokenizer, texts: list[str]) -> list[str]:
    """Every ``##c`` piece the WordPiece trainer would create, in sorted order.

    The trainer creates these pieces while walking a hash map of words, so their ids, and with
    them the tie-breaks between merges of equal count, differ from process to process: the same
    text gave a different vocabulary per run. Handing them to the trainer up front, as tokens it
    must keep, fixes their ids; :func:`_canonical_ids` then turns them back into ordinary vocabulary.
    """
    prefix = "##"
    chars: set[str] = set()
    for text in texts:
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)):
            chars.update(word[1:])
    return [prefix + c for c in sorted(chars)]


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    family: str = "bert",
    model: str | None = None,
    special_ids: dict[str, int] | None = None,
    lowercase: bool = False,
    min_frequency: int = 2,
    max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Train a tokenizer on ``texts`` and wrap it as a transformers fast tokenizer."""
    fam = get_family(family)
    model = model or fam.tokenizer_model
    specials = special_token_list(fam, special_ids)
    if vocab_size <= len(specials):
        raise DataError(f"vocab size {vocab_size} leaves no room beyond the {len(specials)} special tokens")
    tok, trainer_cls = _backend(model, fam, lowercase)
    kwargs = {"vocab_size": vocab_size, "special_tokens": specials, "show_progress": False}
    if model == "unigram":
        kwargs["unk_token"] = fam.special_tokens["unk"]
    else:
        kwargs["min_frequency"] = min_frequency
    if model == "bpe":
        kwargs["initial_alphabet"] = pre_tokenizers.ByteLevel.alphabet()
    texts = [t for t in texts if t and t.strip()]
    pinned = _continuing_pieces(tok, texts) if model == "wordpiece" else []
    kwargs["special_tokens"] = specials + pinned
    tok.train_from_iterator(texts, trainer=trainer_cls(**kwargs))
    if tok.get_vocab_size() <= len(specials):
        raise DataError("the text is empty: a tokenizer needs some text to learn from")
    tok = _canonical_ids(tok, unpin=pinned)
    cls, sep = fam.special_tokens["cls"], fam.special_tokens["sep"]
    pair = f"{cls} $A {sep} $B:1 {sep}:1" if fam.pair_style == "bert" else f"{cls} $A {sep} {sep} $B {sep}"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=pair,
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))],
    )
    roles = {f"{role}_token": token for role, token in fam.special_tokens.items()}
    inputs = (
        ["input_ids", "token_type_ids", "attention_mask"] if fam.has_token_types else ["input_ids", "attention_mask"]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, model_input_names=inputs, **roles)
