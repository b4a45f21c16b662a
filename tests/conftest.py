"""Shared fixtures: tiny random models of every family, tokenizers trained on a few sentences."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# What loads verified is cached across processes (embswap.io.check_cache_dir): keep the tests' own.
os.environ.setdefault("EMBSWAP_CHECK_CACHE", __import__("tempfile").mkdtemp(prefix="embswap-checked-"))

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from embswap.train.tokenizer import train_tokenizer  # noqa: E402

transformers.logging.set_verbosity_error()

EN_TEXT = [
    "In the beginning God created the heavens and the earth.",
    "The earth was formless and empty, and darkness was on the surface of the deep.",
    "God said, let there be light, and there was light.",
    "God saw the light, and saw that it was good.",
    "God divided the light from the darkness.",
    "God called the light day, and the darkness he called night.",
    "There was evening and there was morning, the first day.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
] * 4
DE_TEXT = [
    "Im Anfang schuf Gott die Himmel und die Erde.",
    "Und die Erde war wüst und leer, und Finsternis war über der Tiefe.",
    "Und Gott sprach: Es werde Licht! und es ward Licht.",
    "Und Gott sah das Licht, dass es gut war.",
    "Und Gott schied das Licht von der Finsternis.",
    "Und Gott nannte das Licht Tag, und die Finsternis nannte er Nacht.",
    "Und es ward Abend und es ward Morgen: erster Tag.",
    "Der schnelle braune Fuchs springt über den faulen Hund am Fluss.",
] * 4

FAMILIES = ["bert", "roberta", "xlm-roberta", "distilbert", "electra", "deberta-v2"]

_SHAPE = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128
)


def tiny_config(name: str, vocab_size: int, pad_id: int):
    if name == "bert":
        return transformers.BertConfig(vocab_size=vocab_size, pad_token_id=pad_id, **_SHAPE)
    if name == "roberta":
        return transformers.RobertaConfig(
            vocab_size=vocab_size,
            pad_token_id=pad_id,
            bos_token_id=0,
            eos_token_id=2,
            **{**_SHAPE, "max_position_embeddings": 130},
        )
    if name == "xlm-roberta":
        return transformers.XLMRobertaConfig(
            vocab_size=vocab_size,
            pad_token_id=pad_id,
            bos_token_id=0,
            eos_token_id=2,
            **{**_SHAPE, "max_position_embeddings": 130},
        )
    if name == "distilbert":
        return transformers.DistilBertConfig(
            vocab_size=vocab_size,
            pad_token_id=pad_id,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=128,
        )
    if name == "electra":
        return transformers.ElectraConfig(vocab_size=vocab_size, pad_token_id=pad_id, embedding_size=16, **_SHAPE)
    if name == "deberta-v2":
        return transformers.DebertaV2Config(vocab_size=vocab_size, pad_token_id=pad_id, **_SHAPE)
    raise KeyError(name)


def family_registry_name(name: str) -> str:
    return "roberta" if name == "xlm-roberta" else name


def make_tokenizer(name: str, texts=EN_TEXT, vocab_size: int = 120):
    family = family_registry_name(name)
    if family == "roberta":  # byte-level BPE starts from 256 bytes
        vocab_size += 256
    return train_tokenizer(texts, vocab_size, family=family, min_frequency=1)


def make_mlm(name: str, seed: int = 0):
    """A tiny random masked LM of family ``name`` and its tokenizer (special ids 0..4)."""
    tokenizer = make_tokenizer(name)
    torch.manual_seed(seed)
    config = tiny_config(name, len(tokenizer), tokenizer.pad_token_id)
    model = transformers.AutoModelForMaskedLM.from_config(config)
    with torch.no_grad():  # random output biases so that their round trip is really tested
        out = model.get_output_embeddings()
        out.bias.normal_()
    model.eval()
    return model, tokenizer


@pytest.fixture(params=FAMILIES)
def family_mlm(request):
    return request.param, *make_mlm(request.param)


@pytest.fixture
def bert_mlm():
    return make_mlm("bert")


@pytest.fixture
def bert_store(tmp_path, bert_mlm):
    """A store with a tiny BERT body and an 'en' pack."""
    from embswap import Store, split_model

    model, tokenizer = bert_mlm
    body, pack = split_model(model, tokenizer, "en")
    store = Store(tmp_path / "store")
    store.save_body(body)
    store.save_pack(pack)
    return store
