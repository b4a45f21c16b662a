"""language="auto": one loaded model routes each sentence to its pack; the rest go to the L1 pack, counted."""

import logging
import sys

import pytest
import torch

from embswap import EmbswapError, MultiLanguageModel, Store, langid, load, split_model
from embswap.train.tokenizer import train_tokenizer
from tests.helpers.models import DE_TEXT, EN_TEXT, make_mlm

FRENCH = "Au commencement, Dieu créa les cieux et la terre."


@pytest.fixture
def encoder_packs():
    """A head-less body (mixed-language batches need one without an MLM head), its split-off 'en'
    pack and a random 'de' pack."""
    model, tokenizer = make_mlm("bert")
    body, en = split_model(model.base_model, tokenizer, "en")
    de_tok = train_tokenizer(DE_TEXT, 90, family="bert", min_frequency=1)
    torch.manual_seed(1)
    de = type(en)(
        language="de", tokenizer=de_tok, word_embeddings=torch.randn(len(de_tok), 32), body_fingerprint=body.fingerprint
    )
    return body, en, de


@pytest.fixture
def identifier():
    pytest.importorskip("py3langid")


def test_auto_batch_equals_each_sentence_alone(identifier, encoder_packs):
    body, en, de = encoder_packs
    multi = MultiLanguageModel(body, {"en": en, "de": de}, language="auto")
    texts = [EN_TEXT[0], DE_TEXT[1], DE_TEXT[2], EN_TEXT[3], DE_TEXT[7], EN_TEXT[7]]
    expected = ["en", "de", "de", "en", "de", "en"]
    batch = multi.tokenize(texts)  # the default set by language="auto"
    assert batch["languages"] == expected
    assert torch.equal(batch["input_ids"], multi.tokenize(texts, expected)["input_ids"])
    with torch.no_grad():
        mixed = multi(**batch).last_hidden_state
        for i, lang in enumerate(expected):
            # Sentence i alone in a batch of the same shape (other rows padding), with its language given:
            # a different shape may sum in another order, which changes the last bits.
            ids = torch.full_like(batch["input_ids"], body.special_tokens["pad"])
            ids[i] = batch["input_ids"][i]
            alone = multi(ids, languages=lang, attention_mask=batch["attention_mask"]).last_hidden_state
            assert torch.equal(mixed[i], alone[i])


def test_low_confidence_and_unloaded_language_go_to_l1_and_are_counted(identifier, encoder_packs, caplog):
    body, en, de = encoder_packs
    # German first: the fallback is still English, the language the body was split with.
    multi = MultiLanguageModel(body, {"de": de, "en": en}, language="auto")
    assert multi.fallback_language == "en"
    texts = [DE_TEXT[0], "12345 678", FRENCH, EN_TEXT[2], ""]
    with caplog.at_level(logging.WARNING, logger="embswap.langid"):
        routing = multi.route(texts)
    assert routing.languages == ["de", "en", "en", "en", "en"]
    assert routing.fallback == [1, 2, 4]
    assert routing.detected[2] == "fr"
    assert routing.counts == {"de": 1, "en": 4}
    assert routing.fallback_language == "en" and routing.min_confidence == langid.DEFAULT_MIN_CONFIDENCE
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["3 of 5 texts went to the fallback pack 'en'"]
    assert multi.tokenize(texts, "auto")["languages"] == routing.languages


def test_threshold_sends_everything_below_it_to_the_fallback(identifier, encoder_packs):
    body, en, de = encoder_packs
    multi = MultiLanguageModel(body, {"en": en, "de": de}, language="auto", min_confidence=1.01)
    routing = multi.route([DE_TEXT[0], EN_TEXT[0]])
    assert routing.languages == ["en", "en"] and routing.fallback == [0, 1]


def test_fallback_without_the_l1_pack_is_the_first_loaded(identifier, encoder_packs):
    body, en, de = encoder_packs
    multi = MultiLanguageModel(body, {"de": de}, language="auto")
    assert multi.fallback_language == "de"
    assert multi.route(["12345"]).languages == ["de"]


def test_load_language_auto_routes_by_default(identifier, tmp_path, encoder_packs):
    body, en, de = encoder_packs
    store = Store(tmp_path / "store")
    store.save_body(body)
    store.save_pack(de)
    store.save_pack(en)
    multi = load(store, language="auto")
    assert multi.tokenize([EN_TEXT[0], DE_TEXT[0]])["languages"] == ["en", "de"]
    plain = load(store)  # without "auto", tokenize keeps its old output: the current language for all
    assert set(plain.tokenize([EN_TEXT[0]])) == {"input_ids", "attention_mask"}
    with pytest.raises(EmbswapError, match='"auto" routes text, not ids'):
        multi(torch.zeros((1, 3), dtype=torch.long), languages="auto")


def test_identify_maps_pack_names_and_reports_other_languages(identifier):
    found = langid.identify([DE_TEXT[0], FRENCH], ["en", "de-1912"])
    assert found[0].language == "de-1912" and found[0].confidence > 0.9
    assert [f.detected for f in found] == ["de", "fr"]
    # French keeps its probability on French: the best candidate gets almost none, so it falls back.
    assert found[1].confidence < 0.01
    forced = langid.identify([FRENCH], ["en", "de"], restrict=True)[0]
    assert forced.language in ("en", "de") and forced.detected == forced.language
    assert langid.identify([EN_TEXT[0]], ["xx"], restrict=True) == [langid.Identification(None, 0.0)]


def test_lingua_backend_identifies_among_candidates():
    pytest.importorskip("lingua")
    found = langid.identify([EN_TEXT[0], DE_TEXT[0], "12345"], ["en", "de"], restrict=True, backend="lingua")
    assert [f.language for f in found] == ["en", "de", None]


def test_missing_extra_is_one_line_with_the_install_command(monkeypatch, encoder_packs):
    body, en, de = encoder_packs
    monkeypatch.setitem(sys.modules, "py3langid", None)  # import py3langid now raises ImportError
    monkeypatch.setitem(sys.modules, "py3langid.langid", None)
    langid._load.cache_clear()
    try:
        with pytest.raises(EmbswapError) as err:
            MultiLanguageModel(body, {"en": en, "de": de}, language="auto")
    finally:
        langid._load.cache_clear()
    assert str(err.value) == 'language="auto" needs a language identifier: pip install "embswap[langid]"'
    with pytest.raises(EmbswapError, match="unknown language identifier 'cld3'"):
        langid.identify(["x"], backend="cld3")


def test_a_verse_that_also_reads_as_a_neighbour_language_goes_to_its_pack(identifier):
    # Held-out Russian (Deuteronomy 6:9): py3langid's best guess is Bulgarian, with 0.29 left on Russian.
    verse = "и напиши их на косяках дома твоего и на воротах твоих."
    found = langid.identify([verse], ["en", "de", "ru", "zh", "hi"])[0]
    assert found.detected == "bg" and found.language == "ru"
    assert round(found.confidence, 2) == 0.29
    routed = langid.route([verse], ["en", "de", "ru"], "en")
    assert routed.languages == ["ru"] and routed.fallback == []
