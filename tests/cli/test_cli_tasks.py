"""`embswap finetune` and `embswap evaluate` end to end on a tiny store."""

import json
import sys

import pytest
from typer.testing import CliRunner

from embswap import TaskModule, split_model
from embswap.cli.main import app, main
from tests.helpers.models import EN_TEXT, make_mlm

runner = CliRunner()
ROWS = [{"text": t, "label": "light" if "light" in t else "other"} for t in EN_TEXT]


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def store(tmp_path, bert_store):
    other = split_model(*make_mlm("bert", seed=2), "xx")[1]
    other.body_fingerprint = bert_store.body.fingerprint
    bert_store.save_pack(other)
    return bert_store


def test_finetune_then_evaluate(tmp_path, store):
    train = _write(tmp_path / "train.jsonl", ROWS)
    for lang in ("en", "xx"):
        _write(tmp_path / f"test.{lang}.jsonl", ROWS)
    args = [
        "finetune",
        "--body",
        str(store.body_path),
        "--pack",
        str(store.pack_path("en")),
        "--task",
        "classification",
        "--train",
        train,
        "--dev",
        train,
        "-o",
        str(store.task_path("light")),
        "--max-steps",
        "4",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--noise",
        "0.075",
        "--seq-len",
        "32",
        "--extra-pack",
        str(store.pack_path("xx")),
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == 4 and summary["labels"] == ["light", "other"]
    assert summary["batches_per_pack"] == [2, 2] and summary["packs"] == ["en", "xx"]
    assert set(summary["dev_metrics"]) == {"accuracy", "macro_f1"}
    task = TaskModule.from_pretrained(store.task_path("light"))
    assert task.settings["noise"] == 0.075 and task.provenance["data"] == train

    result = runner.invoke(
        app,
        [
            "evaluate",
            "--body",
            str(store.body_path),
            "--pack",
            str(store.pack_path("en")),
            "--task",
            str(store.task_path("light")),
            "--data",
            str(tmp_path / "test.en.jsonl"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    single = json.loads(result.stdout)
    assert set(single) == {"accuracy", "macro_f1", "n"} and single["n"] == len(ROWS)

    pattern = str(tmp_path / "test.{lang}.jsonl")
    result = runner.invoke(
        app, ["evaluate", "--store", str(store.path), "--task", "light", "--lang", "en,xx", "--data", pattern, "--json"]
    )
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    assert set(table) == {"en", "xx"} and table["en"] == single

    result = runner.invoke(app, ["evaluate", "--store", str(store.path), "--task", "light", "--data", pattern])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "xx" in result.stdout


def test_bad_row_is_one_line_naming_file_line_field(tmp_path, store, monkeypatch, capsys):
    bad = _write(tmp_path / "bad.jsonl", ROWS[:2] + [{"text": "no label here"}])
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "embswap",
            "finetune",
            "--body",
            str(store.body_path),
            "--pack",
            str(store.pack_path("en")),
            "--task",
            "classification",
            "--train",
            bad,
            "-o",
            str(tmp_path / "t"),
        ],
    )
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{bad}:3" in err and "'label'" in err


def test_usage_errors_exit_2(tmp_path, store):
    base = ["finetune", "--body", str(store.body_path), "--pack", str(store.pack_path("en")), "-o", str(tmp_path / "t")]
    assert runner.invoke(app, base + ["--task", "translation", "--train", "x.jsonl"]).exit_code == 2
    assert runner.invoke(app, base + ["--task", "classification"]).exit_code == 2  # no --train
    assert (
        runner.invoke(app, base + ["--task", "classification", "--train", "x.jsonl", "--mode", "half"]).exit_code == 2
    )
    assert runner.invoke(app, ["evaluate", "--task", "t"]).exit_code == 2  # no --data


def test_named_source_for_training(tmp_path, store, monkeypatch):
    bible = pytest.importorskip("embswap.data.bible")
    monkeypatch.setattr(bible, "resolve_source", lambda spec: ROWS if spec.endswith("train") else ROWS[:8])
    args = [
        "finetune",
        "--body",
        str(store.body_path),
        "--pack",
        str(store.pack_path("en")),
        "--task",
        "classification",
        "--train",
        "bible-genre:en:train",
        "--dev",
        "bible-genre:en:dev",
        "-o",
        str(tmp_path / "genre"),
        "--max-steps",
        "2",
        "--batch-size",
        "8",
        "--mode",
        "frozen",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert TaskModule.from_pretrained(tmp_path / "genre").provenance["data"] == "bible-genre:en:train"


def test_finetune_robust_packs_relearned_into_the_store_then_reused(tmp_path, bert_store):
    text = _write(tmp_path / "en.txt", EN_TEXT)
    base = [
        "finetune",
        "--body",
        str(bert_store.body_path),
        "--pack",
        str(bert_store.pack_path("en")),
        "--task",
        "classification",
        "--train",
        _write(tmp_path / "train.jsonl", ROWS),
        "--max-steps",
        "4",
        "--batch-size",
        "8",
        "--seq-len",
        "32",
        "--robust-steps",
        "2",
        "--json",
    ]
    first = runner.invoke(app, base + ["-o", str(tmp_path / "t1"), "--robust-packs", "2", "--robust-text", text])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["packs"] == ["en", "en-robust-1", "en-robust-2"] and summary["batches_per_pack"] == [2, 1, 1]
    assert bert_store.languages == ["en", "en-robust-1", "en-robust-2"]
    config = bert_store.pack_path("en-robust-1") / "config.json"
    stamp = config.stat().st_mtime_ns
    # The second run finds the packs in the store (no text needed) and records the same fingerprints.
    second = runner.invoke(app, base + ["-o", str(tmp_path / "t2"), "--robust-packs", "2"])
    assert second.exit_code == 0, second.output
    assert config.stat().st_mtime_ns == stamp
    recorded = [TaskModule.from_pretrained(tmp_path / t).provenance["trained_with_packs"] for t in ("t1", "t2")]
    assert recorded[0] == recorded[1] and len({e["fingerprint"] for e in recorded[0]}) == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--robust-packs", "-1"], "error: --robust-packs is -1; give the number of extra L1 packs"),
        (["--robust-packs", "1"], "error: re-learning en-robust-1 needs 'en' text; pass --robust-text FILE"),
    ],
)
def test_finetune_robust_pack_errors_are_one_line(tmp_path, bert_store, extra, message):
    args = [
        "finetune",
        "--body",
        str(bert_store.body_path),
        "--pack",
        str(bert_store.pack_path("en")),
        "--task",
        "classification",
        "--train",
        _write(tmp_path / "train.jsonl", ROWS),
        "-o",
        str(tmp_path / "t"),
    ]
    result = runner.invoke(app, args + extra)
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith(message), result.stderr
    assert bert_store.languages == ["en"] and not (tmp_path / "t").exists()


def test_finetune_robust_packs_need_a_store(tmp_path, bert_store):
    import shutil

    body = shutil.copytree(bert_store.body_path, tmp_path / "loose-body")
    args = [
        "finetune",
        "--body",
        str(body),
        "--pack",
        str(bert_store.pack_path("en")),
        "--task",
        "classification",
        "--train",
        _write(tmp_path / "train.jsonl", ROWS),
        "-o",
        str(tmp_path / "t"),
        "--robust-packs",
        "1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--store" in result.output
