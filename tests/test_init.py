"""Initialising a new matrix: random, overlap, dictionary and subword-mean, with exact counts."""

import pytest
import torch

from embswap import split_model
from embswap.errors import DataError, IncompatibleArtifactError
from embswap.init import _Vocabulary, initialize_embeddings

from conftest import make_tokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Fixed vocabularies, so every count below is exact (trained tokenizers break ties differently per run).
EN_TOKENS = [
    "God", "light", "earth", "day", "was", "there", "darkness", "and", "eve", "##ning", "saw", "the",
    "G", "##o", "##t", "L", "##i", "##c", "##h", "##ss", "da", ".", ",", "s", "##a", "##u", "##f",
]
DE_TOKENS = [
    "Gott", "Licht", "Erde", "Tag", "war", "da", "Finsternis", "und", "Und", "Abend", "sah", "Nacht",
    "schuf", "Wasser", ".", ",", "G", "##o", "##t", "##ss", "s", "##ch", "##x", "Gottes",
]
SHARED = ["da", ".", ",", "G", "##o", "##t", "##ss", "s"]
WORDS = {
    "Gott": ["God"],
    "Licht": ["light", "lamp"],  # "lamp" is not an English token: only "light" counts
    "Erde": ["earth", "soil"],
    "Tag": ["day"],
    "war": ["was"],
    "da": ["there"],  # "da" is also an English string: the word list wins over overlap
    "Finsternis": ["darkness", "dark"],
    "und": ["and"],  # "Und" finds it too, through the lowercase lookup
    "Abend": ["evening", "eve"],  # "evening" is two English pieces: skipped
    "sah": ["saw", "the"],  # two single-piece translations: their mean
    "Nacht": ["night"],  # not one English token: no dictionary row
}
# "Gottes" finds "Gott" through the word list's lemma candidates.
DICTIONARY_ROWS = {
    "Gott": ["God"], "Gottes": ["God"], "Licht": ["light"], "Erde": ["earth"], "Tag": ["day"], "war": ["was"],
    "da": ["there"], "Finsternis": ["darkness"], "und": ["and"], "Und": ["and"], "Abend": ["eve"],
    "sah": ["saw", "the"],
}


def wordpiece_tokenizer(tokens):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*SPECIALS, *tokens])}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )


@pytest.fixture(scope="module")
def setup():
    import transformers

    from conftest import tiny_config

    en_tok, de_tok = wordpiece_tokenizer(EN_TOKENS), wordpiece_tokenizer(DE_TOKENS)
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(tiny_config("bert", len(en_tok), 0))
    with torch.no_grad():
        model.get_output_embeddings().bias.normal_()
    body, en_pack = split_model(model, en_tok, "en")
    return body, en_pack, de_tok


def test_random_init_uses_the_body_std(setup):
    body, _, de_tok = setup
    result = initialize_embeddings(body, de_tok, "random", seed=3)
    assert result.word_embeddings.shape == (len(de_tok), 32)
    assert abs(result.word_embeddings.std().item() - 0.02) < 0.004
    assert torch.equal(result.output_bias, torch.zeros(len(de_tok)))
    assert result.counts == {"special": 0, "dictionary": 0, "overlap": 0, "subword-mean": 0, "random": len(de_tok)}
    assert result.anchored == set()
    again = initialize_embeddings(body, de_tok, "random", seed=3)
    assert torch.equal(again.word_embeddings, result.word_embeddings)


def test_random_init_with_reference_copies_special_rows(setup):
    body, en_pack, de_tok = setup
    result = initialize_embeddings(body, de_tok, "random", reference_pack=en_pack)
    for token_id in body.special_tokens.values():
        assert torch.equal(result.word_embeddings[token_id], en_pack.word_embeddings[token_id])
        assert result.output_bias[token_id] == en_pack.output_bias[token_id]
    assert result.counts["special"] == 5 and result.counts["random"] == len(de_tok) - 5
    table = {0: torch.full((32,), 7.0)}
    given = initialize_embeddings(body, de_tok, "random", reference_pack=en_pack, special_rows=table)
    assert torch.equal(given.word_embeddings[0], table[0])


def test_overlap_copies_exactly_the_shared_strings(setup):
    body, en_pack, de_tok = setup
    en_vocab, de_vocab = en_pack.tokenizer.get_vocab(), de_tok.get_vocab()
    shared = {t for t in de_vocab if t in en_vocab and t not in SPECIALS}
    assert shared == set(SHARED)
    result = initialize_embeddings(body, de_tok, "overlap", reference_pack=en_pack)
    assert result.counts == {"special": 5, "dictionary": 0, "overlap": 8, "subword-mean": 0, "random": 24 - 8}
    for token in shared:
        assert torch.equal(result.word_embeddings[de_vocab[token]], en_pack.word_embeddings[en_vocab[token]]), token
        assert result.output_bias[de_vocab[token]] == en_pack.output_bias[en_vocab[token]]
    assert result.anchored == {de_vocab[t] for t in shared} | set(body.special_tokens.values())
    plain = initialize_embeddings(body, de_tok, "random", reference_pack=en_pack)
    others = [i for t, i in de_vocab.items() if t not in shared and t not in SPECIALS]
    assert torch.equal(result.word_embeddings[others], plain.word_embeddings[others])  # random rows unchanged


def test_dictionary_uses_the_word_list(setup):
    body, en_pack, de_tok = setup
    en_vocab, de_vocab = en_pack.tokenizer.get_vocab(), de_tok.get_vocab()
    en_rows = en_pack.word_embeddings
    result = initialize_embeddings(body, de_tok, "dictionary", reference_pack=en_pack, dictionary=WORDS)
    rows = result.word_embeddings

    def en(*words):
        return en_rows[[en_vocab[w] for w in words]].mean(0)

    for de_word, en_words in DICTIONARY_ROWS.items():
        assert torch.equal(rows[de_vocab[de_word]], en(*en_words)), de_word
    expected_bias = en_pack.output_bias[[en_vocab["saw"], en_vocab["the"]]].mean()
    assert result.output_bias[de_vocab["sah"]] == expected_bias
    assert result.counts["dictionary"] == len(DICTIONARY_ROWS) == 12
    # Overlap fills what the word list left (the shared strings but 'da'); the rest is random.
    assert result.counts["overlap"] == len(SHARED) - 1
    assert result.counts["random"] == 24 - 12 - 7  # Nacht, schuf, Wasser, ##ch, ##x
    assert sum(result.counts.values()) == len(de_tok)
    assert de_vocab["Nacht"] not in result.anchored


def test_dictionary_limit_takes_the_most_frequent_words(setup):
    body, en_pack, de_tok = setup
    de_vocab = de_tok.get_vocab()
    freq = {de_vocab["Gott"]: 10, de_vocab["und"]: 8, de_vocab["Tag"]: 1}
    result = initialize_embeddings(body, de_tok, "dictionary", reference_pack=en_pack, dictionary=WORDS,
                                   dictionary_limit=2, token_frequencies=freq)
    assert result.counts["dictionary"] == 2
    assert {de_vocab["Gott"], de_vocab["und"]} <= result.anchored and de_vocab["Tag"] not in result.anchored


def test_dictionary_reads_a_tsv_file(setup, tmp_path):
    body, en_pack, de_tok = setup
    path = tmp_path / "de-en.tsv"
    path.write_text("Gott\tGod\nTag\tday\n", encoding="utf-8")
    result = initialize_embeddings(body, de_tok, "dictionary", reference_pack=en_pack, dictionary=path)
    assert result.counts["dictionary"] == 3  # Gott, Gottes (its lemma), Tag


def test_subword_mean_averages_the_reference_pieces(setup):
    body, en_pack, de_tok = setup
    en_vocab, de_vocab = en_pack.tokenizer.get_vocab(), de_tok.get_vocab()
    result = initialize_embeddings(body, de_tok, "subword-mean", reference_pack=en_pack)

    def en(*pieces):
        return en_pack.word_embeddings[[en_vocab[p] for p in pieces]].mean(0)

    assert torch.equal(result.word_embeddings[de_vocab["Gott"]], en("G", "##o", "##t", "##t"))
    assert torch.equal(result.word_embeddings[de_vocab["Licht"]], en("L", "##i", "##c", "##h", "##t"))
    # A continuation is looked up as a continuation when the reference has it...
    assert torch.equal(result.word_embeddings[de_vocab["##ss"]], en("##ss"))
    # ... and otherwise cut like a word ("##ch" -> "c" is no English word start: unknown, so random).
    assert de_vocab["##ch"] not in result.anchored
    assert torch.equal(result.word_embeddings[de_vocab["schuf"]], en("s", "##c", "##h", "##u", "##f"))
    assert result.counts["overlap"] == 8
    assert result.counts["subword-mean"] == 24 - 8 - result.counts["random"]
    unknown = {t for t in DE_TOKENS if de_vocab[t] not in result.anchored}
    assert unknown == {"Erde", "Tag", "war", "Finsternis", "und", "Und", "Abend", "Nacht", "Wasser", "##ch", "##x",
                       "Gottes"}


def test_marker_conventions_translate_between_vocabularies():
    wordpiece = _Vocabulary(wordpiece_tokenizer(EN_TOKENS))
    bytelevel = _Vocabulary(make_tokenizer("roberta"))
    metaspace = _Vocabulary(make_tokenizer("deberta-v2"))
    assert (wordpiece.style, bytelevel.style, metaspace.style) == ("wordpiece", "bytelevel", "metaspace")
    assert wordpiece.surface("##ss") == ("ss", False) and wordpiece.surface("God") == ("God", True)
    assert bytelevel.surface("Ġthe") == ("the", True) and bytelevel.surface("the") == ("the", False)
    assert metaspace.surface("▁the") == ("the", True) and metaspace.surface("he") == ("he", False)
    # A word start becomes the reference's word-start token, a continuation its continuation token.
    assert bytelevel.encode("the", True) == [bytelevel.vocab["Ġthe"]]
    assert metaspace.encode("the", True) == [metaspace.vocab["▁the"]]
    assert wordpiece.encode("ss", False) == [wordpiece.vocab["##ss"]]
    assert wordpiece.encode("zzzq", True) is None  # unknown pieces: no row to average


def test_errors_name_the_missing_input(setup):
    body, en_pack, de_tok = setup
    with pytest.raises(IncompatibleArtifactError, match="reference pack"):
        initialize_embeddings(body, de_tok, "overlap")
    with pytest.raises(DataError, match="--dictionary"):
        initialize_embeddings(body, de_tok, "dictionary", reference_pack=en_pack)
    with pytest.raises(DataError, match="unknown init method"):
        initialize_embeddings(body, de_tok, "wechsel")
