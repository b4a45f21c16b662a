"""Scoring composed models: metrics keys, per-language tables, majority baseline, exported pipelines."""

import json

import pytest
import torch

from embswap import Store, export, split_model
from embswap.errors import DataError, EmbswapError
from embswap.evaluate import evaluate, evaluate_languages, majority_baseline, score_model
from embswap.train.finetune import FinetuneConfig, FinetuneRun
from tests.helpers.models import EN_TEXT, make_mlm

ROWS = [{"text": t, "label": "light" if "light" in t else "other"} for t in EN_TEXT]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store with a body, packs 'en' and 'xx' (another matrix for the same body) and task 'light'."""
    root = tmp_path_factory.mktemp("eval")
    body, pack = split_model(*make_mlm("bert"), "en")
    other = split_model(*make_mlm("bert", seed=3), "xx")[1]
    other.body_fingerprint = body.fingerprint
    store = Store(root / "store")
    store.save_body(body)
    store.save_pack(pack)
    store.save_pack(other)
    config = FinetuneConfig(
        task="classification", max_steps=6, lr=5e-3, batch_size=8, seq_len=32, progress=False, checkpoint_every=None
    )
    run = FinetuneRun(body, pack, ROWS, config)
    run.train(root / "ckpt")
    store.save_task("light", run.task_module())
    for lang in ("en", "xx"):
        (root / f"test.{lang}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return root, store, run


def test_evaluate_equals_live_model(trained):
    root, store, run = trained
    scores = evaluate(store.body_path, store.pack_path("en"), store.task_path("light"), ROWS)
    assert set(scores) == {"accuracy", "macro_f1", "n"} and scores["n"] == len(ROWS)
    live = score_model(run.model, run.tokenizer, "classification", run.labels, ROWS, seq_len=32)
    assert scores == live
    # A file path works as well as rows.
    assert evaluate(store.body, store.pack("en"), store.task("light"), root / "test.en.jsonl") == scores


def test_evaluate_languages_table(trained):
    root, store, _ = trained
    results = evaluate_languages(store, "light", ["en", "xx"], str(root / "test.{lang}.jsonl"))
    assert list(results) == ["en", "xx"]
    assert results["xx"] == evaluate(store.body, store.pack("xx"), store.task("light"), ROWS)
    with pytest.raises(EmbswapError, match="no \\{lang\\} placeholder"):
        evaluate_languages(store, "light", ["en", "xx"], str(root / "test.en.jsonl"))


def test_unknown_labels_in_evaluation_data(trained):
    _, store, _ = trained
    with pytest.raises(DataError, match="'mystery'"):
        evaluate(store.body, store.pack("en"), store.task("light"), [{"text": "x", "label": "mystery"}])


def test_majority_baseline_exact():
    train = [{"label": "a"}] * 3 + [{"label": "b"}] * 2
    test = [{"label": "a"}, {"label": "b"}, {"label": "b"}, {"label": "c"}]
    scores = majority_baseline(train, test)
    # always "a": accuracy 1/4; F1 a = 2*1/(4+1) = 0.4, b = 0, c = 0 -> macro 0.4/3
    assert scores == {"accuracy": 25.0, "macro_f1": pytest.approx(40 / 3), "n": 4, "label": "a"}


def test_exported_task_model_runs_in_plain_transformers(tmp_path, trained):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    _, store, run = trained
    export(store.body, store.pack("en"), store.task("light"), tmp_path / "exported")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "exported").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "exported")
    batch = tokenizer(EN_TEXT[:4], padding=True, return_tensors="pt")
    run.model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, run.model(**batch).logits)
    classify = pipeline("text-classification", model=str(tmp_path / "exported"))
    predictions = classify(EN_TEXT[:3])
    assert {p["label"] for p in predictions} <= {"light", "other"}
