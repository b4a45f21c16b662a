"""Composed and exported models work in transformers' pipeline(): fill-mask, text-classification, QA.

Task heads are random (they stand in for fine-tuned ones): what is checked is that every pipeline
runs on the composed model of a swapped-in language and returns well-formed answers.
"""

import pytest
import torch
import transformers
from transformers import pipeline

from embswap import LanguagePack, TaskModule, compose, export, split_model
from embswap.train.tokenizer import train_tokenizer
from tests.helpers.models import DE_TEXT, make_mlm, random_task


@pytest.fixture(scope="module")
def parts():
    """A body, its English pack and a German pack (random rows: the pipelines only need the shapes right)."""
    model, tokenizer = make_mlm("bert")
    body, en = split_model(model, tokenizer, "en")
    de_tok = train_tokenizer(DE_TEXT, 90, family="bert", min_frequency=1)
    torch.manual_seed(1)
    de = LanguagePack(
        language="de",
        tokenizer=de_tok,
        word_embeddings=torch.randn(len(de_tok), 32),
        output_bias=torch.randn(len(de_tok)),
        body_fingerprint=body.fingerprint,
    )
    return body, en, de


def random_qa_task(body, pack, seed=0) -> TaskModule:
    """An extractive-QA task module with a random span head."""
    torch.manual_seed(seed)
    model = transformers.AutoModelForQuestionAnswering.from_config(body.hf_config(pack.vocab_size))
    head = {k: v.clone() for k, v in model.state_dict().items() if k not in body.tensors and "word_embeddings" not in k}
    assert sorted(head) == ["qa_outputs.bias", "qa_outputs.weight"]
    return TaskModule(task="qa", labels=[], head=head, body_fingerprint=body.fingerprint)


def test_fill_mask_live_and_exported(tmp_path, parts):
    body, _, de = parts
    model, tokenizer = compose(body, de)
    live = pipeline("fill-mask", model=model, tokenizer=tokenizer)(f"Und Gott sah das {tokenizer.mask_token}.")
    assert len(live) == 5 and all(0 <= r["token"] < len(tokenizer) for r in live)
    export(body, de, None, tmp_path / "de-mlm")
    exported = pipeline("fill-mask", model=str(tmp_path / "de-mlm"))(f"Und Gott sah das {tokenizer.mask_token}.")
    assert [r["token"] for r in exported] == [r["token"] for r in live]
    for a, b in zip(live, exported):
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)


def test_text_classification_live_and_exported(tmp_path, parts):
    body, en, de = parts
    task = random_task(body, en, labels=("law", "poetry", "gospel"))
    model, tokenizer = compose(body, de, task)
    live = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None)(DE_TEXT[:2])
    export(body, de, task, tmp_path / "de-genre")
    exported = pipeline("text-classification", model=str(tmp_path / "de-genre"), top_k=None)(DE_TEXT[:2])
    for got, ref in zip(exported, live):
        assert {r["label"] for r in got} == {"law", "poetry", "gospel"}
        assert sum(r["score"] for r in got) == pytest.approx(1.0, abs=1e-5)
        assert {r["label"]: r["score"] for r in got} == pytest.approx({r["label"]: r["score"] for r in ref}, abs=1e-6)


def test_question_answering_exported(tmp_path, parts):
    body, _, de = parts
    export(body, de, random_qa_task(body, de), tmp_path / "de-qa")
    qa = pipeline("question-answering", model=str(tmp_path / "de-qa"))
    assert isinstance(qa.model, transformers.BertForQuestionAnswering)
    context = "Und Gott nannte das Licht Tag, und die Finsternis nannte er Nacht."
    # Positions stop at 128 in the tiny model: keep windows short.
    answer = qa(question="Wie nannte Gott das Licht?", context=context, max_seq_len=64, doc_stride=16)
    assert isinstance(answer["answer"], str) and answer["answer"]
    assert context[answer["start"] : answer["end"]] == answer["answer"]
    assert 0.0 <= answer["score"] <= 1.0
