"""Initialising a new matrix: random, overlap, dictionary, subword-mean and aligned, with exact counts."""

import itertools

import pytest
import torch

from embswap import split_model
from embswap.errors import DataError, EmbswapError, IncompatibleArtifactError
from embswap.init import _Vocabulary, initialize_embeddings
from tests.helpers.models import make_tokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Fixed vocabularies, so every count below is exact (trained tokenizers break ties differently per run).
EN_TOKENS = [
    "God",
    "light",
    "earth",
    "day",
    "was",
    "there",
    "darkness",
    "and",
    "eve",
    "##ning",
    "saw",
    "the",
    "G",
    "##o",
    "##t",
    "L",
    "##i",
    "##c",
    "##h",
    "##ss",
    "da",
    ".",
    ",",
    "s",
    "##a",
    "##u",
    "##f",
]
DE_TOKENS = [
    "Gott",
    "Licht",
    "Erde",
    "Tag",
    "war",
    "da",
    "Finsternis",
    "und",
    "Und",
    "Abend",
    "sah",
    "Nacht",
    "schuf",
    "Wasser",
    ".",
    ",",
    "G",
    "##o",
    "##t",
    "##ss",
    "s",
    "##ch",
    "##x",
    "Gottes",
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
    "Gott": ["God"],
    "Gottes": ["God"],
    "Licht": ["light"],
    "Erde": ["earth"],
    "Tag": ["day"],
    "war": ["was"],
    "da": ["there"],
    "Finsternis": ["darkness"],
    "und": ["and"],
    "Und": ["and"],
    "Abend": ["eve"],
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
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


@pytest.fixture(scope="module")
def setup():
    import transformers

    from tests.helpers.models import tiny_config

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
    assert result.counts == {
        "special": 0,
        "dictionary": 0,
        "aligned": 0,
        "overlap": 0,
        "subword-mean": 0,
        "random": len(de_tok),
    }
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
    assert result.counts == {
        "special": 5,
        "dictionary": 0,
        "aligned": 0,
        "overlap": 8,
        "subword-mean": 0,
        "random": 24 - 8,
    }
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


def test_anchored_rows_are_exactly_the_word_list_shared_and_special_rows(setup):
    from embswap.train.transfer import TransferConfig, run_transfer
    from tests.helpers.models import DE_TEXT

    body, en_pack, de_tok = setup
    de_vocab = de_tok.get_vocab()
    expected = (
        {de_vocab[w] for w in DICTIONARY_ROWS}
        | {de_vocab[t] for t in SHARED if t not in DICTIONARY_ROWS}
        | set(body.special_tokens.values())
    )
    assert len(expected) == 12 + 7 + 5
    result = initialize_embeddings(body, de_tok, "dictionary", reference_pack=en_pack, dictionary=WORDS)
    assert result.anchored == expected
    assert result.provenance()["anchored_rows"] == 24 == len(de_tok) - result.counts["random"]
    # The pack step 2 writes records the same count.
    outcome = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(
            language="de",
            init="dictionary",
            anchors="frozen",
            max_steps=1,
            seq_len=32,
            batch_size=4,
            progress=False,
            checkpoint_every=None,
        ),
        output=None,
        reference_pack=en_pack,
        dictionary=WORDS,
    )
    assert outcome.pack.provenance["init"]["anchored_rows"] == 24
    counts = outcome.pack.provenance["init"]["counts"]
    assert {rule: n for rule, n in counts.items() if n} == {"special": 5, "dictionary": 12, "overlap": 7, "random": 5}


def test_default_anchors_freeze_dictionary_rows_and_free_the_rest(setup):
    """anchors 'auto' (the default) is the ablation's pick: frozen for dictionary init, free otherwise."""
    from embswap.train.anchors import resolve_anchors
    from embswap.train.transfer import TransferConfig, run_transfer
    from tests.helpers.models import DE_TEXT

    body, en_pack, de_tok = setup
    common = dict(language="de", max_steps=2, seq_len=32, batch_size=4, progress=False, checkpoint_every=None)
    dict_run = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(init="dictionary", **common),
        output=None,
        reference_pack=en_pack,
        dictionary=WORDS,
    )
    assert dict_run.pack.provenance["anchors"] == "frozen"
    rows = sorted(dict_run.init.anchored)
    assert torch.equal(dict_run.pack.word_embeddings[rows], dict_run.init.word_embeddings[rows])
    overlap_run = run_transfer(
        body, de_tok, DE_TEXT, TransferConfig(init="overlap", **common), output=None, reference_pack=en_pack
    )
    assert overlap_run.pack.provenance["anchors"] == "free"
    rows = sorted(overlap_run.init.anchored)
    assert not torch.equal(overlap_run.pack.word_embeddings[rows], overlap_run.init.word_embeddings[rows])
    assert resolve_anchors("penalty", "dictionary") == "penalty"
    with pytest.raises(EmbswapError, match="unknown anchors mode 'loose'"):
        resolve_anchors("loose", "random")


def test_dictionary_limit_takes_the_most_frequent_words(setup):
    body, en_pack, de_tok = setup
    de_vocab = de_tok.get_vocab()
    freq = {de_vocab["Gott"]: 10, de_vocab["und"]: 8, de_vocab["Tag"]: 1}
    result = initialize_embeddings(
        body, de_tok, "dictionary", reference_pack=en_pack, dictionary=WORDS, dictionary_limit=2, token_frequencies=freq
    )
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
    assert unknown == {
        "Erde",
        "Tag",
        "war",
        "Finsternis",
        "und",
        "Und",
        "Abend",
        "Nacht",
        "Wasser",
        "##ch",
        "##x",
        "Gottes",
    }


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


# ---------------------------------------------------------------------------------------------
# aligned: word alignment of parallel text. Every 3-word combination of 8 translated words, in
# the same order on both sides: each word co-occurs with its translation only, so eflomal links
# them exactly (300 runs gave the same counts every time).
LEXICON = {
    "Gott": "God",
    "Licht": "light",
    "Erde": "earth",
    "Tag": "day",
    "war": "was",
    "Finsternis": "darkness",
    "und": "and",
    "sah": "saw",
}
ALIGNED_PAIRS = [
    {"source": " ".join(LEXICON[w] for w in words), "target": " ".join(words)}
    for words in itertools.combinations(LEXICON, 3)
]


def test_count_links_sums_links_per_token_pair():
    from embswap.wordalign import count_links

    sources, targets = [[10, 11, 12], [10, 13]], [[20, 21], [21, 20, 22]]
    links = [[(0, 0), (1, 1), (2, 1)], [(0, 1), (1, 0), (1, 2), (0, 0)]]
    counts = count_links(sources, targets, links, ignore_source=frozenset({12}))
    assert counts == {20: {10: 2}, 21: {11: 1, 13: 1, 10: 1}, 22: {13: 1}}  # 12 ignored


def test_aligned_rows_are_link_weighted_means(setup, monkeypatch, tmp_path):
    import embswap.wordalign as wordalign

    monkeypatch.setenv("EMBSWAP_CACHE", str(tmp_path))
    body, en_pack, de_tok = setup
    en_vocab, de_vocab = en_pack.tokenizer.get_vocab(), de_tok.get_vocab()
    pairs = [{"source": "God saw light", "target": "Gott sah Licht"}, {"source": "God saw", "target": "sah"}]
    # sah -> God once, saw twice; Gott -> God; Licht -> light.
    fixed = [[(0, 0), (1, 1), (0, 1), (2, 2)], [(1, 0)]]
    monkeypatch.setattr(wordalign, "align_positions", lambda sources, targets: fixed)
    result = initialize_embeddings(body, de_tok, "aligned", reference_pack=en_pack, parallel=pairs)
    ref = en_pack.word_embeddings
    expected = (ref[en_vocab["God"]] + 2 * ref[en_vocab["saw"]]) / 3
    assert torch.allclose(result.word_embeddings[de_vocab["sah"]], expected, atol=1e-7)
    bias = (en_pack.output_bias[en_vocab["God"]] + 2 * en_pack.output_bias[en_vocab["saw"]]) / 3
    assert result.output_bias[de_vocab["sah"]].item() == pytest.approx(bias.item(), abs=1e-6)
    assert torch.equal(result.word_embeddings[de_vocab["Gott"]], ref[en_vocab["God"]])
    assert torch.equal(result.word_embeddings[de_vocab["Licht"]], ref[en_vocab["light"]])
    # Unlinked tokens fall back to overlap, then subword-mean (schuf), then random.
    assert result.counts == {
        "special": 5,
        "dictionary": 0,
        "aligned": 3,
        "overlap": 8,
        "subword-mean": 1,
        "random": 24 - 3 - 8 - 1,
    }
    assert torch.equal(result.word_embeddings[de_vocab["da"]], ref[en_vocab["da"]])


def test_aligned_init_with_eflomal_links_each_word_to_its_translation(setup, monkeypatch, tmp_path):
    pytest.importorskip("eflomal")
    monkeypatch.setenv("EMBSWAP_CACHE", str(tmp_path))
    body, en_pack, de_tok = setup
    en_vocab, de_vocab = en_pack.tokenizer.get_vocab(), de_tok.get_vocab()
    result = initialize_embeddings(body, de_tok, "aligned", reference_pack=en_pack, parallel=ALIGNED_PAIRS)
    assert result.counts == {"special": 5, "dictionary": 0, "aligned": 8, "overlap": 8, "subword-mean": 1, "random": 7}
    for de_word, en_word in LEXICON.items():
        assert torch.equal(result.word_embeddings[de_vocab[de_word]], en_pack.word_embeddings[en_vocab[en_word]])
    assert result.provenance() == {"method": "aligned", "counts": result.counts, "anchored_rows": 22}


def test_aligned_init_is_recorded_in_the_pack(setup, tmp_path, monkeypatch):
    from embswap.train.transfer import TransferConfig, run_transfer

    pytest.importorskip("eflomal")
    monkeypatch.setenv("EMBSWAP_CACHE", str(tmp_path))
    body, en_pack, de_tok = setup
    outcome = run_transfer(
        body,
        de_tok,
        [],
        TransferConfig(
            language="de",
            init="aligned",
            objective="align",
            objective_options={"parallel": ALIGNED_PAIRS, "teacher_cache": str(tmp_path)},
            max_steps=1,
            seq_len=32,
            batch_size=4,
            progress=False,
            checkpoint_every=None,
        ),
        output=None,
        reference_pack=en_pack,
    )
    init = outcome.pack.provenance["init"]
    assert init["method"] == "aligned" and init["counts"]["aligned"] == 8 and init["anchored_rows"] == 22


def test_aligned_init_errors(setup, monkeypatch, tmp_path):
    import sys

    from embswap.errors import EmbswapError

    monkeypatch.setenv("EMBSWAP_CACHE", str(tmp_path))
    body, en_pack, de_tok = setup
    with pytest.raises(DataError, match="init 'aligned' word-aligns parallel text; pass --parallel"):
        initialize_embeddings(body, de_tok, "aligned", reference_pack=en_pack)
    with pytest.raises(DataError, match="no parallel pair with text on both sides"):
        initialize_embeddings(
            body, de_tok, "aligned", reference_pack=en_pack, parallel=[{"source": "God", "target": "   "}]
        )
    monkeypatch.setitem(sys.modules, "eflomal", None)  # as if the optional extra were not installed
    with pytest.raises(
        EmbswapError,
        match=r'^init "aligned" word-aligns the parallel text with eflomal; '
        r'pip install "embswap\[align\]"$',
    ):
        initialize_embeddings(body, de_tok, "aligned", reference_pack=en_pack, parallel=ALIGNED_PAIRS)


def test_alignment_counts_are_cached_by_text_and_tokenizers(setup, monkeypatch, tmp_path):
    import embswap.wordalign as wordalign

    _, en_pack, de_tok = setup
    calls = []
    monkeypatch.setattr(wordalign, "align_positions", lambda sources, targets: calls.append(1) or [[(0, 0)]])
    pairs = [{"source": "God", "target": "Gott"}]
    first = wordalign.token_translation_counts(pairs, en_pack.tokenizer, de_tok, cache_dir=tmp_path)
    again = wordalign.token_translation_counts(pairs, en_pack.tokenizer, de_tok, cache_dir=tmp_path)
    assert first == again == {de_tok.get_vocab()["Gott"]: {en_pack.tokenizer.get_vocab()["God"]: 1}}
    assert len(calls) == 1 and len(list(tmp_path.iterdir())) == 1
    wordalign.token_translation_counts(
        [{"source": "God", "target": "Licht"}], en_pack.tokenizer, de_tok, cache_dir=tmp_path
    )
    wordalign.token_translation_counts(pairs, de_tok, en_pack.tokenizer, cache_dir=tmp_path)  # sides swapped
    assert len(calls) == 3 and len(list(tmp_path.iterdir())) == 3
