"""One body with several packs: O(1) language switch; mixed batches equal single-language runs."""

import time

import pytest
import torch
import transformers

from embswap import EmbswapError, MultiLanguageModel, compose, load, split_model
from embswap.train.tokenizer import train_tokenizer
from tests.helpers.models import DE_TEXT, EN_TEXT, make_mlm, random_task


@pytest.fixture
def two_packs():
    model, tokenizer = make_mlm("bert")
    body, en = split_model(model, tokenizer, "en")
    de_tok = train_tokenizer(DE_TEXT, 90, family="bert", min_frequency=1)
    torch.manual_seed(1)
    de = type(en)(
        language="de",
        tokenizer=de_tok,
        word_embeddings=torch.randn(len(de_tok), 32),
        output_bias=torch.randn(len(de_tok)),
        body_fingerprint=body.fingerprint,
    )
    return body, en, de


def test_switch_language_matches_single_compose(two_packs):
    body, en, de = two_packs
    multi = MultiLanguageModel(body, {"en": en, "de": de})
    for pack, texts in ((de, DE_TEXT[:3]), (en, EN_TEXT[:3]), (de, DE_TEXT[3:5])):
        multi.set_language(pack.language)
        single, tok = compose(body, pack)
        batch = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            assert torch.equal(multi(**batch).logits, single(**batch).logits)


def test_switch_is_fast_and_copies_nothing(two_packs):
    body, en, de = two_packs
    multi = MultiLanguageModel(body, {"en": en, "de": de})
    ptr = multi.embedding.weight.data_ptr()
    start = time.perf_counter()
    for _ in range(200):
        multi.set_language("de")
        multi.set_language("en")
    per_switch = (time.perf_counter() - start) / 400
    assert multi.embedding.weight.data_ptr() == ptr
    assert per_switch < 0.01  # generous bound; the benchmark measures the real figure


def test_mixed_batch_equals_single_language(two_packs):
    body, en, de = two_packs
    task = random_task(body, en)
    multi = MultiLanguageModel(body, {"en": en, "de": de}, task)
    texts = [EN_TEXT[0], DE_TEXT[1], EN_TEXT[2], DE_TEXT[3]]
    langs = ["en", "de", "en", "de"]
    batch = multi.tokenize(texts, langs)
    with torch.no_grad():
        mixed = multi(batch["input_ids"], languages=langs, attention_mask=batch["attention_mask"]).logits
        for lang, pack in (("en", en), ("de", de)):
            single, _ = compose(body, pack, task)
            rows = [i for i, code in enumerate(langs) if code == lang]
            others = [i for i in range(len(langs)) if i not in rows]
            ids = batch["input_ids"].clone()
            ids[others] = body.special_tokens["pad"]  # same batch shape; other rows are not compared
            out = single(input_ids=ids, attention_mask=batch["attention_mask"]).logits
            assert torch.equal(mixed[rows], out[rows])


def test_masked_lm_refuses_mixed_batch(two_packs):
    body, en, de = two_packs
    multi = MultiLanguageModel(body, {"en": en, "de": de})
    batch = multi.tokenize([EN_TEXT[0], DE_TEXT[0]], ["en", "de"])
    with pytest.raises(EmbswapError, match="one language at a time"):
        multi(batch["input_ids"], languages=["en", "de"], attention_mask=batch["attention_mask"])


def test_masked_lm_refuses_a_later_pack_without_output_bias(two_packs):
    import dataclasses

    from embswap import IncompatibleArtifactError

    body, en, de = two_packs
    with pytest.raises(IncompatibleArtifactError) as caught:
        MultiLanguageModel(body, {"en": en, "de": dataclasses.replace(de, output_bias=None)})
    assert str(caught.value) == (
        "pack 'de' has no MLM output bias, which the masked-LM model needs; "
        "load it with a task, or train the pack on a body with an MLM head"
    )


def test_load_from_store(tmp_path, two_packs):
    from embswap import Store

    body, en, de = two_packs
    store = Store(tmp_path / "s")
    store.save_body(body)
    store.save_pack(en)
    store.save_pack(de)
    store.save_task("topic", random_task(body, en))
    multi = load(tmp_path / "s", task="topic")
    assert multi.languages == ["de", "en"]
    assert isinstance(multi.model, transformers.BertForSequenceClassification)
