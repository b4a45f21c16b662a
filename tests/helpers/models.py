"""Tiny random models of every family and tokenizers trained on a few sentences."""

import torch
import transformers

from embswap import TaskModule
from embswap.train.tokenizer import train_tokenizer

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


def random_task(body, pack, labels=("a", "b", "c"), seed=0) -> TaskModule:
    """A classification task module with a random head (stands in for a fine-tuned one)."""
    torch.manual_seed(seed)
    config = body.hf_config(pack.vocab_size, num_labels=len(labels))
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    body_keys = set(body.tensors)
    head = {k: v.clone() for k, v in model.state_dict().items() if k not in body_keys and "word_embeddings" not in k}
    special = {i: torch.randn(body.embedding_dim) for i in body.special_tokens.values()}
    delta_key = next(k for k in body.tensors if "encoder.layer.0.attention.self.query.weight" in k)
    delta = {delta_key: body.tensors[delta_key] + 0.01}
    return TaskModule(
        task="classification",
        labels=list(labels),
        head=head,
        body_fingerprint=body.fingerprint,
        body_delta=delta,
        special_rows=special,
    )
