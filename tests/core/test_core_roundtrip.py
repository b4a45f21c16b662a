"""split -> save -> load -> compose gives back exactly the original model, for every family."""

import torch

from embswap import Body, LanguagePack, compose, split_model
from tests.helpers.models import EN_TEXT


def _batch(tokenizer):
    return tokenizer(EN_TEXT[:3], padding=True, return_tensors="pt")


def test_split_compose_exact_logits(family_mlm):
    name, model, tokenizer = family_mlm
    body, pack = split_model(model, tokenizer, "en")
    composed, tok = compose(body, pack)
    batch = _batch(tokenizer)
    with torch.no_grad():
        expected = model(**batch).logits
        got = composed(**batch).logits
    assert type(composed) is type(model)
    assert torch.equal(expected, got)
    assert composed.get_output_embeddings().weight is composed.get_input_embeddings().weight


def test_save_load_bit_exact(tmp_path, family_mlm):
    name, model, tokenizer = family_mlm
    body, pack = split_model(model, tokenizer, "en")
    body.save_pretrained(tmp_path / "body")
    pack.save_pretrained(tmp_path / "pack")
    body2 = Body.from_pretrained(tmp_path / "body")
    pack2 = LanguagePack.from_pretrained(tmp_path / "pack")
    assert body2.fingerprint == body.fingerprint
    assert body2.tensors.keys() == body.tensors.keys()
    for key in body.tensors:
        assert torch.equal(body.tensors[key], body2.tensors[key]), key
    assert torch.equal(pack.word_embeddings, pack2.word_embeddings)
    assert torch.equal(pack.output_bias, pack2.output_bias)
    assert pack2.tokenizer("God said")["input_ids"] == tokenizer("God said")["input_ids"]
    composed, _ = compose(tmp_path / "body", tmp_path / "pack")
    batch = _batch(tokenizer)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, composed(**batch).logits)


def test_body_excludes_pack_tensors(bert_mlm):
    model, tokenizer = bert_mlm
    body, pack = split_model(model, tokenizer, "en")
    assert not any("word_embeddings" in k for k in body.tensors)
    assert "cls.predictions.bias" not in body.tensors
    assert "bert.embeddings.position_embeddings.weight" in body.tensors
    assert pack.word_embeddings.shape == (len(tokenizer), 32)
    assert body.special_tokens == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
