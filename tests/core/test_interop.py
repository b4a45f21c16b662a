"""adapters (AdapterHub) interop: real adapters code writes or reads each side of every conversion."""

import adapters
import pytest
import torch
import transformers
from adapters import DoubleSeqBnConfig, SeqBnConfig, SeqBnInvConfig

from embswap import CorruptArtifactError, IncompatibleArtifactError, LanguagePack, compose, split_model
from embswap.interop import (
    attach_adapters_language_adapter,
    export_adapters_embeddings,
    import_adapters_embeddings,
)
from embswap.train.tokenizer import train_tokenizer
from tests.helpers.models import DE_TEXT, EN_TEXT, make_mlm


@pytest.fixture
def setup():
    """A tiny BERT split into body + en pack, the same model run by adapters, and a German tokenizer."""
    model, en_tok = make_mlm("bert")
    body, en = split_model(model, en_tok, "en")
    adapters.init(model)
    de_tok = train_tokenizer(DE_TEXT, 90, family="bert", min_frequency=1)
    return body, en, model, en_tok, de_tok


def _hidden(model, batch):
    with torch.no_grad():
        return model.base_model(**batch).last_hidden_state


def _randomise(model, name):
    torch.manual_seed(3)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if f".{name}." in key:
                param.normal_(0, 0.1)  # adapters initialises the up-projection near zero: make it matter


def test_import_save_embeddings_matches_adapters(tmp_path, setup):
    body, en, model, en_tok, de_tok = setup
    model.add_embeddings("de", de_tok, reference_embedding="default", reference_tokenizer=en_tok)
    model.save_embeddings(str(tmp_path / "emb"), "de", tokenizer=de_tok)
    pack = import_adapters_embeddings(tmp_path / "emb", body, "de")
    assert torch.equal(pack.word_embeddings, model.get_input_embeddings().weight)
    assert torch.equal(pack.output_bias, torch.zeros(len(de_tok)))
    assert "zeros" in pack.provenance["output_bias"]
    pack.save_pretrained(tmp_path / "pack")  # a real embswap pack: safetensors + config
    composed, tok = compose(body, LanguagePack.from_pretrained(tmp_path / "pack"))
    batch = tok(DE_TEXT[:3], padding=True, return_tensors="pt")
    assert torch.equal(_hidden(model, batch), _hidden(composed, batch))  # adapters' model, "de" active


def test_export_loads_in_adapters(tmp_path, setup):
    body, en, model, en_tok, de_tok = setup
    torch.manual_seed(1)
    de = LanguagePack(
        language="de",
        tokenizer=de_tok,
        word_embeddings=torch.randn(len(de_tok), 32),
        output_bias=torch.randn(len(de_tok)),
        body_fingerprint=body.fingerprint,
    )
    export_adapters_embeddings(de, tmp_path / "emb")
    loaded_tok = model.load_embeddings(str(tmp_path / "emb"), "de")
    assert loaded_tok.get_vocab() == de_tok.get_vocab()
    composed, _ = compose(body, de)
    batch = loaded_tok(DE_TEXT[:3], padding=True, return_tensors="pt")
    assert torch.equal(_hidden(model, batch), _hidden(composed, batch))
    model.set_active_embeddings("default")  # and back: the English model is unchanged
    en_model, _ = compose(body, en)
    batch = en_tok(EN_TEXT[:2], padding=True, return_tensors="pt")
    assert torch.equal(_hidden(model, batch), _hidden(en_model, batch))


def test_export_import_round_trip(tmp_path, setup):
    body, en, *_ = setup
    export_adapters_embeddings(en, tmp_path / "emb")
    back = import_adapters_embeddings(tmp_path / "emb", body, "en")
    assert torch.equal(back.word_embeddings, en.word_embeddings)
    assert back.tokenizer(EN_TEXT[0])["input_ids"] == en.tokenizer(EN_TEXT[0])["input_ids"]


@pytest.mark.parametrize(
    "config, safetensors, from_base",
    [
        (SeqBnConfig(), False, False),
        (DoubleSeqBnConfig(reduction_factor=4), True, False),
        (SeqBnConfig(), True, True),
        (SeqBnInvConfig(), False, False),
    ],
    ids=["seq_bn-bin", "double_seq_bn-safetensors", "saved-from-base-model", "mad-x-invertible"],
)
def test_attach_language_adapter_matches_adapters(tmp_path, setup, config, safetensors, from_base):
    body, en, model, en_tok, _ = setup
    owner = model.base_model if from_base else model  # adapters keys tensors without "bert." from the bare model
    model.add_adapter("mad_en", config=config)
    _randomise(model, "mad_en")
    options = {} if from_base else {"with_head": False}  # adapters cannot safetensors-save a tied static head
    owner.save_adapter(str(tmp_path / "ad"), "mad_en", use_safetensors=safetensors, **options)
    model.set_active_adapters("mad_en")
    pack = attach_adapters_language_adapter(en, tmp_path / "ad", body)
    assert all(".language." in k for k in pack.adapter_tensors)
    pack.save_pretrained(tmp_path / "pack")
    composed, tok = compose(body, LanguagePack.from_pretrained(tmp_path / "pack"))
    batch = tok(EN_TEXT[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
        plain = compose(body, en)[0](**batch).logits
        assert torch.equal(composed(**batch).logits, expected)
    assert not torch.equal(plain, expected)  # the adapter really changes the output


def test_attach_refuses_adapter_of_other_model(tmp_path, setup):
    body, en, *_ = setup
    # Same family and width, but 3 layers: the adapter has tensors the body's model lacks.
    bigger = transformers.BertForMaskedLM(
        transformers.BertConfig(
            vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64
        )
    )
    adapters.init(bigger)
    bigger.add_adapter("mad", config=SeqBnConfig())
    bigger.save_adapter(str(tmp_path / "ad"), "mad")
    with pytest.raises(IncompatibleArtifactError, match="does not match"):
        attach_adapters_language_adapter(en, tmp_path / "ad", body)


def test_import_rejects_non_tensor_pickle(tmp_path, setup):
    body, *_ = setup
    (tmp_path / "emb").mkdir()
    torch.save({"not": "a tensor"}, tmp_path / "emb" / "embedding.pt")
    with pytest.raises(CorruptArtifactError, match="expected a 2-d float"):
        import_adapters_embeddings(tmp_path / "emb", body, "de")


def test_import_never_runs_pickled_code(tmp_path, setup):
    body, *_ = setup

    class Boom:
        def __reduce__(self):
            return (exec, ("open('pwned', 'w').write('x')",))

    (tmp_path / "emb").mkdir()
    torch.save(Boom(), tmp_path / "emb" / "embedding.pt")
    with pytest.raises(CorruptArtifactError, match="never code"):
        import_adapters_embeddings(tmp_path / "emb", body, "de")
    assert not (tmp_path / "pwned").exists()
