"""Sentence-embedding evaluation: retrieval with its controls (library and CLI) and the linear probe."""

import json

import pytest
import torch
from typer.testing import CliRunner

from embswap import DataError, LanguagePack, Store, split
from embswap.cli.main import app
from embswap.init import initialize_embeddings
from embswap.tasks.probe import probe_transfer, train_probe
from embswap.tasks.sentence import evaluate_retrieval, retrieval_report, sentence_task
from embswap.train.tokenizer import train_tokenizer
from embswap.train.transfer import TransferConfig, run_transfer
from tests.helpers.models import DE_TEXT, EN_TEXT

PAIRS = [{"source": en, "target": de} for en, de in zip(EN_TEXT[:8], DE_TEXT[:8])]


def headless_parts(folder, seed=0):
    """A tiny head-less BERT encoder (like a sentence encoder) split into body and en pack."""
    from transformers import BertModel

    from tests.helpers.models import make_tokenizer, tiny_config

    tok = make_tokenizer("bert")
    torch.manual_seed(seed)
    BertModel(tiny_config("bert", len(tok), tok.pad_token_id)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return split(str(folder), "en", allow_headless=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A tiny store: body, en pack, a de pack trained 2 align steps from an overlap init (seed 3)."""
    root = tmp_path_factory.mktemp("store")
    body, en = headless_parts(root / "encoder")
    de_tok = train_tokenizer(DE_TEXT, 90, family="bert", special_ids=body.special_tokens, min_frequency=1)
    st = Store(root / "store")
    st.save_body(body)
    st.save_pack(en)
    run_transfer(
        body,
        de_tok,
        [],
        TransferConfig(
            language="de",
            init="overlap",
            objective="align",
            objective_options={"parallel": PAIRS, "teacher_cache": str(root / "cache")},
            max_steps=2,
            batch_size=4,
            seq_len=32,
            seed=3,
            checkpoint_every=None,
            progress=False,
        ),
        output=st.pack_path("de"),
        reference_pack=en,
    )
    return st


def percent(scores):
    return {k: v if k == "n" else 100.0 * v for k, v in scores.items()}


def test_retrieval_report_controls_are_the_models_they_name(store):
    body, en, de = store.body, store.pack("en"), store.pack("de")
    task = sentence_task(body)
    same = [{"source": text, "target": text} for text in EN_TEXT[:5]]
    report = retrieval_report(body, de, PAIRS, reference_pack=en, ceiling_pairs=same)
    assert report["n"] == 8 and report["untrained_init"] == "overlap" and report["notes"] == []
    results = report["results"]
    assert list(results) == ["pack", "untrained_pack", "raw_text", "ceiling"]
    assert results["pack"] == percent(evaluate_retrieval(body, en, de, task, PAIRS))
    start = initialize_embeddings(body, de.tokenizer, "overlap", reference_pack=en, seed=3)
    untrained = LanguagePack(
        language="de",
        tokenizer=de.tokenizer,
        word_embeddings=start.word_embeddings,
        body_fingerprint=body.fingerprint,
        output_bias=start.output_bias,
    )
    assert results["untrained_pack"] == percent(evaluate_retrieval(body, en, untrained, task, PAIRS))
    assert results["raw_text"] == percent(evaluate_retrieval(body, en, en, task, PAIRS))
    # The same English sentence on both sides: every one finds itself.
    assert results["ceiling"] == {
        "top1_l2_to_l1": 100.0,
        "top1_l1_to_l2": 100.0,
        "mrr_l2_to_l1": 100.0,
        "mrr_l1_to_l2": 100.0,
        "n": 5,
    }


def test_retrieval_report_says_why_a_control_is_missing(store):
    de = store.pack("de")
    aligned = LanguagePack(
        language="de",
        tokenizer=de.tokenizer,
        word_embeddings=de.word_embeddings,
        body_fingerprint=de.body_fingerprint,
        output_bias=de.output_bias,
        provenance={"init": {"method": "aligned"}},
    )
    report = retrieval_report(store.body, aligned, PAIRS, reference_pack=store.pack("en"))
    assert "untrained_pack" not in report["results"]
    assert report["notes"] == [
        "no untrained-pack control: init 'aligned' needs its word list or parallel text, which the pack does not store"
    ]


def test_cli_retrieval_in_a_store(store, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in PAIRS), encoding="utf-8")
    args = ["evaluate", "--store", str(store.path), "--lang", "de", "--task", "retrieval", "--data", str(data)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["reference_language"] == "en" and set(report["results"]) == {"pack", "untrained_pack", "raw_text"}
    expected = retrieval_report(store.body, store.pack("de"), PAIRS, reference_pack=store.pack("en"))
    assert report["results"] == expected["results"]
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "untrained (overlap)" in table.stdout and "raw L2 text" in table.stdout


def test_cli_retrieval_bad_input(store, tmp_path):
    de = str(store.pack_path("de"))
    loose = ["evaluate", "--body", str(store.body_path), "--pack", de, "--task", "retrieval"]
    missing = CliRunner().invoke(app, loose)
    assert missing.exit_code == 2 and "--data" in missing.output
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nno tab here\n", encoding="utf-8")
    result = CliRunner().invoke(app, [*loose, "--data", str(bad)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: {bad}:2: expected 'source<TAB>target', found 1 fields"]
    _, other_en = headless_parts(tmp_path / "other", seed=5)
    other_en.save_pretrained(tmp_path / "other-en")
    other = ["--reference-pack", str(tmp_path / "other-en")]
    result = CliRunner().invoke(app, [*loose, "--data", "bible:4-e:test", *other])
    assert result.exit_code == 1 and "reference pack 'en' was trained for body" in result.output


def test_train_probe_is_deterministic_and_separates_classes():
    generator = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8) * 4
    labels = ["a", "b", "c"] * 20
    vectors = centres[[i % 3 for i in range(60)]] + torch.randn(60, 8, generator=generator)
    probe = train_probe(vectors, labels)
    again = train_probe(vectors, labels)
    assert torch.equal(probe.weight, again.weight) and probe.labels == ["a", "b", "c"]
    assert probe.score(centres, ["a", "b", "c"]) == {"accuracy": 100.0, "macro_f1": 100.0, "n": 3}
    with pytest.raises(DataError, match="at least two classes"):
        train_probe(vectors[:3], ["a"] * 3)
    with pytest.raises(DataError, match="one label per vector"):
        train_probe(vectors, labels[:5])


def test_probe_transfer_through_the_same_pack_equals_in_language(store):
    body, en = store.body, store.pack("en")
    rows = [{"text": t, "label": "genesis" if "God" in t else "other"} for t in EN_TEXT[:8]]
    result = probe_transfer(body, en, en, sentence_task(body), rows, rows, source_test_rows=rows)
    assert result["zero_shot"] == result["in_language"]
    # 5 of 8 rows name God: always "genesis" is right 62.5 %; its F1 is 2*.625/1.625, "other" scores 0.
    assert result["majority"] == {
        "accuracy": 62.5,
        "macro_f1": pytest.approx(50 * 1.25 / 1.625),
        "n": 8,
        "label": "genesis",
    }
    assert result["n_train"] == 8
    with pytest.raises(DataError, match=r"test labels \['law'\] never occur"):
        probe_transfer(body, en, en, sentence_task(body), rows, [{"text": "x", "label": "law"}])
