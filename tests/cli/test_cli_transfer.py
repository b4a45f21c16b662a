"""`embswap tokenizer train` and `embswap transfer` through the CLI."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from embswap import LanguagePack, Store, compose
from embswap.artifacts import load_tokenizer
from embswap.cli.main import app
from embswap.train.transfer import checkpoint_dir_for
from tests.helpers.models import DE_TEXT

runner = CliRunner()
SMALL = ["--seq-len", "32", "--batch-size", "4", "--threads", "1", "--quiet"]


@pytest.fixture
def de_file(tmp_path):
    path = tmp_path / "de.txt"
    path.write_text("\n".join(DE_TEXT) + "\n", encoding="utf-8")
    return path


def invoke(args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_tokenizer_train_uses_the_body_special_ids(tmp_path, bert_store, de_file):
    out = tmp_path / "tok"
    result = invoke(
        [
            "tokenizer",
            "train",
            "--lang",
            "de",
            "--text",
            de_file,
            "--vocab-size",
            100,
            "--body",
            bert_store.body_path,
            "--min-frequency",
            1,
            "-o",
            out,
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    tok = load_tokenizer(out)
    assert summary["vocab_size"] == len(tok) == 100 and summary["family"] == "bert"
    assert {r: getattr(tok, f"{r}_token_id") for r in ("pad", "unk", "cls", "sep", "mask")} == Store(
        bert_store.path
    ).body.special_tokens


def test_tokenizer_train_needs_text(tmp_path):
    result = invoke(["tokenizer", "train", "-o", tmp_path / "tok"])
    assert result.exit_code == 2 and "--text" in result.output


def test_transfer_in_a_store_defaults_to_its_other_pack(bert_store, de_file):
    out = bert_store.pack_path("de")
    result = invoke(
        [
            "transfer",
            "--body",
            bert_store.body_path,
            "--lang",
            "de",
            "--text",
            de_file,
            "-o",
            out,
            "--vocab-size",
            100,
            "--init",
            "overlap",
            "--max-steps",
            4,
            "--eval-text",
            de_file,
            "--json",
            *SMALL,
        ]
    )
    assert result.exit_code == 0, result.output
    assert "reference pack" in result.stderr and "packs/en" in result.stderr
    info = json.loads(result.stdout)
    assert info["init"]["method"] == "overlap" and info["init"]["reference_pack"] == "en"
    assert info["init"]["counts"]["special"] == 5 and info["steps"] == 4
    assert Store(bert_store.path).languages == ["de", "en"]
    model, tok = compose(bert_store.body_path, out)
    assert len(tok) == 100


def test_transfer_resume_through_the_cli_is_bit_identical(tmp_path, bert_store, de_file, monkeypatch):
    """An interrupted run resumed with --resume reuses its own tokenizer and ends where a full run ends."""
    import embswap.train.mlm as mlm

    common = [
        "--body",
        bert_store.body_path,
        "--lang",
        "de",
        "--text",
        de_file,
        "--vocab-size",
        100,
        "--max-steps",
        6,
        "--checkpoint-every",
        3,
        "--pos",
        *SMALL,
    ]
    interrupted = bert_store.pack_path("de")
    original = mlm.MLMBatches.__call__

    def crash_at_step_4(self, step, *args):
        if step == 4:
            raise RuntimeError("power cut")
        return original(self, step, *args)

    monkeypatch.setattr(mlm.MLMBatches, "__call__", crash_at_step_4)
    result = invoke(["transfer", "-o", interrupted, *common])
    # An unexpected exception is one `error:` line, exit 1; the interrupted run leaves no pack, only its checkpoint.
    assert result.exit_code == 1 and "unexpected error (RuntimeError): power cut" in result.output
    assert not interrupted.exists()
    monkeypatch.setattr(mlm.MLMBatches, "__call__", original)
    result = invoke(["transfer", "-o", interrupted, "--resume", *common])
    assert result.exit_code == 0, result.output

    # The uninterrupted reference uses the tokenizer the interrupted run trained.
    tokenizer_dir = tmp_path / "tok"
    shutil.copytree(checkpoint_dir_for(interrupted) / "tokenizer", tokenizer_dir)
    reference = tmp_path / "reference"
    result = invoke(["transfer", "-o", reference, "--tokenizer", tokenizer_dir, *common])
    assert result.exit_code == 0, result.output
    a, b = LanguagePack.from_pretrained(reference), LanguagePack.from_pretrained(interrupted)
    assert torch.equal(a.word_embeddings, b.word_embeddings)
    assert torch.equal(a.output_bias, b.output_bias)
    assert torch.equal(a.position_embeddings, b.position_embeddings)


def test_init_needing_a_reference_without_one_is_a_usage_error(tmp_path, bert_store, de_file):
    body = tmp_path / "elsewhere" / "body"
    shutil.copytree(bert_store.body_path, body)
    result = invoke(
        [
            "transfer",
            "--body",
            body,
            "--lang",
            "de",
            "--text",
            de_file,
            "-o",
            tmp_path / "de",
            "--init",
            "overlap",
            *SMALL,
        ]
    )
    assert result.exit_code == 2 and "--reference-pack" in result.output


def test_tokenizer_for_another_body_is_refused(tmp_path, bert_store, de_file):
    wrong = tmp_path / "wrong-tok"
    result = invoke(
        [
            "tokenizer",
            "train",
            "--text",
            de_file,
            "--vocab-size",
            100,
            "--family",
            "roberta",
            "--min-frequency",
            1,
            "-o",
            wrong,
        ]
    )
    assert result.exit_code == 0, result.output
    result = invoke(
        [
            "transfer",
            "--body",
            bert_store.body_path,
            "--lang",
            "de",
            "--text",
            de_file,
            "-o",
            tmp_path / "de",
            "--tokenizer",
            wrong,
            *SMALL,
        ]
    )
    assert result.exit_code == 1
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "special-token ids" in line and "embswap tokenizer train --body" in line


@pytest.mark.slow
def test_two_process_transfer_with_torchrun(tmp_path, bert_store, de_file):
    """What `accelerate launch` does on GPUs, on 2 CPU processes (gloo): one pack, same tokens seen."""
    tok_dir = tmp_path / "tok"
    result = invoke(
        [
            "tokenizer",
            "train",
            "--text",
            de_file,
            "--vocab-size",
            100,
            "--body",
            bert_store.body_path,
            "--min-frequency",
            1,
            "-o",
            tok_dir,
        ]
    )
    assert result.exit_code == 0, result.output
    out = bert_store.pack_path("de")
    common = [
        "transfer",
        "--body",
        bert_store.body_path,
        "--lang",
        "de",
        "--text",
        de_file,
        "--tokenizer",
        tok_dir,
        "--max-steps",
        6,
        "--checkpoint-every",
        3,
        "--json",
        *SMALL,
    ]
    args = [*common, "-o", out]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "-m",
            "embswap.cli.main",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads(run.stdout)  # only the main process prints
    assert info["num_processes"] == 2 and info["steps"] == 6
    single = invoke([*common, "-o", tmp_path / "single"])
    assert single.exit_code == 0, single.output
    assert json.loads(single.stdout)["tokens_seen"] == info["tokens_seen"]
    model, tok = compose(bert_store.body_path, out)  # fits the untouched body
    with torch.no_grad():
        model(**tok(DE_TEXT[:2], padding=True, return_tensors="pt"))


def test_read_texts_from_files_jsonl_named_sources_and_datasets(tmp_path, monkeypatch):
    from embswap.data.text import read_texts
    from embswap.errors import DataError

    plain = tmp_path / "a.txt"
    plain.write_text("first line\n\n  second line  \n", encoding="utf-8")
    rows = tmp_path / "b.jsonl"
    rows.write_text('{"text": "from jsonl"}\n\n{"text": "again"}\n', encoding="utf-8")
    assert read_texts([plain, rows]) == ["first line", "second line", "from jsonl", "again"]
    with pytest.raises(DataError, match="does not exist"):
        read_texts([tmp_path / "missing.txt"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"label": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:1"):
        read_texts([bad])

    import datasets

    class FakeSplit:
        column_names = ["text", "label"]

        def __getitem__(self, column):
            return ["online one", "", "online two"]

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or FakeSplit())
    assert read_texts([], dataset="wiki", dataset_config="de", split="train") == ["online one", "online two"]
    assert calls == [(("wiki", "de"), {"split": "train"})]
    with pytest.raises(DataError, match="no column 'body'"):
        read_texts([], dataset="wiki", column="body")


def test_read_texts_named_bible_source():
    from embswap.data.text import read_texts
    from embswap.errors import DataError, EmbswapError

    try:
        texts = read_texts(["bible:de:dev"])
    except EmbswapError as err:
        pytest.skip(f"the offline Bible is not installed ({err})")
    assert len(texts) > 100 and all(isinstance(t, str) and t for t in texts)
    with pytest.raises(DataError, match="not text"):
        read_texts(["bible:4-e:dev"])


def test_transfer_anchor_penalty_through_the_cli(bert_store, de_file):
    out = bert_store.pack_path("de")
    common = [
        "transfer",
        "--body",
        bert_store.body_path,
        "--lang",
        "de",
        "--text",
        de_file,
        "-o",
        out,
        "--vocab-size",
        100,
        "--init",
        "overlap",
        "--max-steps",
        2,
        *SMALL,
    ]
    result = invoke([*common, "--anchors", "penalty", "--anchor-penalty", 3, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["anchors"] == "penalty" and info["anchor_penalty"] == 3.0
    assert info["loss_terms"] == {"mlm": 1.0, "anchor_penalty": 3.0}
    assert LanguagePack.from_pretrained(out).provenance["anchor_penalty"] == 3.0
    misplaced = invoke([*common, "--anchor-penalty", 3])
    assert misplaced.exit_code == 2 and "--anchor-penalty" in misplaced.output
