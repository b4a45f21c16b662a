"""Defaults that fit the body: sequence length from its positions, fine-tuning rate from its origin."""

import json

import pytest
import torch
from typer.testing import CliRunner

from embswap import Store, TaskModule, compose, split_model
from embswap.architectures import DEFAULT_SEQ_LEN, max_input_tokens, resolve_seq_len
from embswap.cli.main import app
from embswap.errors import DataError, EmbswapError
from embswap.evaluate import evaluate
from embswap.multilang import MultiLanguageModel
from embswap.tasks.heads import model_inputs
from embswap.tasks.sentence import encode, sentence_task
from embswap.train.finetune import FinetuneConfig, FinetuneRun, default_lr
from tests.helpers.models import DE_TEXT, EN_TEXT, FAMILIES, make_mlm

runner = CliRunner()
FAST = ["--batch-size", "4", "--quiet"]


def _long_rows(texts, n=6):
    """Rows of eight sentences each (well over 64 tokens), two labels in turn."""
    return [{"text": " ".join(texts[i : i + 8]), "label": "a" if i % 2 == 0 else "b"} for i in range(n)]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _run(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("family", FAMILIES)
def test_the_length_rule_per_family(family):
    model, tokenizer = make_mlm(family)
    config = model.config
    # BERT-style tables read a token per row (128 rows); RoBERTa-style ones start at pad_token_id + 1 (130, pad 1).
    rows = 130 if family in ("roberta", "xlm-roberta") else 128
    assert config.max_position_embeddings == rows
    expected = 128
    assert max_input_tokens(config) == max_input_tokens(config.to_dict()) == expected
    assert resolve_seq_len(config) == (DEFAULT_SEQ_LEN, "default")
    assert resolve_seq_len(config, 32) == (32, "given")
    assert resolve_seq_len(config, recorded=48) == (48, "the task module's")
    assert resolve_seq_len(config, recorded=512) == (expected, f"the body's {expected} positions")
    with pytest.raises(DataError, match=f"seq_len {expected + 1} is longer than the body's {expected} positions"):
        resolve_seq_len(config, expected + 1)
    # The longest input the rule allows runs through the model.
    ids = tokenizer(" ".join(EN_TEXT), truncation=True, max_length=expected, return_tensors="pt")["input_ids"]
    assert ids.shape[1] == expected
    with torch.no_grad():
        assert model(input_ids=ids).logits.shape[1] == expected


def test_a_short_body_gets_its_own_length():
    config = make_mlm("bert")[0].config
    config.max_position_embeddings = 64
    assert resolve_seq_len(config) == (64, "the body's 64 positions")
    roberta = make_mlm("roberta")[0].config
    roberta.max_position_embeddings = 66  # what `embswap pretrain --family roberta --seq-len 64` builds
    assert resolve_seq_len(roberta) == (64, "the body's 64 positions")


def test_inputs_longer_than_the_body_are_cut_or_refused_in_one_line():
    model, tokenizer = make_mlm("bert")
    model.config.max_position_embeddings = 64
    torch.manual_seed(0)
    body, pack = split_model(type(model)(model.config).eval(), tokenizer, "en")
    ids = torch.ones(1, 65, dtype=torch.long)
    with pytest.raises(
        DataError, match="^a batch of 65 tokens is longer than the body's 64 positions; use --seq-len 64"
    ):
        model_inputs(model, {"input_ids": ids})
    assert list(model_inputs(model, {"input_ids": ids[:, :64], "pack_index": 0})) == ["input_ids"]
    multi = MultiLanguageModel(body, {"en": pack})
    text = " ".join(EN_TEXT)
    assert multi.tokenize([text], ["en"])["input_ids"].shape == (1, 64)  # default: what the body reads
    assert multi.tokenize([text], ["en"], max_length=40)["input_ids"].shape == (1, 40)
    with pytest.raises(EmbswapError, match="^max_length 65 is longer than the body's 64 positions"):
        multi.tokenize([text], ["en"], max_length=65)


def test_default_lr_follows_the_body():
    body, _ = split_model(*make_mlm("bert"), "en")
    assert default_lr(body) == (2e-5, "default for a pretrained body (hidden 32, 2 layers)")
    body.provenance = {"stage": "pretrain"}
    assert default_lr(body) == (1e-3, "default for a body pretrained by embswap (hidden 32, 2 layers)")
    body.model_config = {**body.model_config, "hidden_size": 512}
    assert default_lr(body) == (5e-4, "default for a body pretrained by embswap (hidden 512, 2 layers)")


def test_finetune_and_evaluate_cut_long_inputs_to_a_short_body(tmp_path):
    """A 64-position body: fine-tuning and evaluation on 100-token rows run with the body's length."""
    model, tokenizer = make_mlm("bert")
    model.config.max_position_embeddings = 64
    torch.manual_seed(0)
    body, pack = split_model(type(model)(model.config).eval(), tokenizer, "en")
    rows = _long_rows(EN_TEXT)
    assert min(len(tokenizer(r["text"])["input_ids"]) for r in rows) > 64
    run = FinetuneRun(
        body,
        pack,
        rows,
        FinetuneConfig(task="classification", max_steps=2, batch_size=4, progress=False, checkpoint_every=None),
    )
    run.train(tmp_path / "ckpt")
    task = run.task_module()
    assert task.settings["seq_len"] == 64 and task.provenance["seq_len_source"] == "the body's 64 positions"
    assert (task.provenance["lr"], task.provenance["lr_source"]) == (
        2e-5,
        "default for a pretrained body (hidden 32, 2 layers)",
    )
    assert evaluate(body, pack, task, rows, device="cpu")["n"] == len(rows)
    with pytest.raises(DataError, match="seq_len 65 is longer than the body's 64 positions"):
        evaluate(body, pack, task, rows, device="cpu", seq_len=65)
    with pytest.raises(DataError, match="seq_len 128 is longer than the body's 64 positions"):
        FinetuneRun(body, pack, rows, FinetuneConfig(task="classification", seq_len=128, progress=False))
    # Sentence encoding: the pooling's 256-token default is cut to the body's 64.
    encoder, tok = compose(body, pack, sentence_task(body))
    assert encode(encoder, tok, [r["text"] for r in rows]).shape == (len(rows), 32)


def test_cli_pretrain_transfer_finetune_evaluate_with_defaults_only(tmp_path):
    """pretrain --seq-len 64, then every later command with no --seq-len and no --lr, on long rows."""
    (tmp_path / "en.txt").write_text("\n".join(EN_TEXT) + "\n", encoding="utf-8")
    (tmp_path / "de.txt").write_text("\n".join(DE_TEXT) + "\n", encoding="utf-8")
    store = tmp_path / "store"
    _run(
        [
            "pretrain",
            "--lang",
            "en",
            "--text",
            tmp_path / "en.txt",
            "-o",
            store,
            "--vocab-size",
            150,
            "--max-steps",
            2,
            "--seq-len",
            64,
            "--threads",
            1,
            *FAST,
        ]
    )
    body = Store(store).body
    assert body.model_config["max_position_embeddings"] == 64

    _run(
        [
            "tokenizer",
            "train",
            "--lang",
            "de",
            "--text",
            tmp_path / "de.txt",
            "--vocab-size",
            150,
            "--min-frequency",
            1,
            "--body",
            store / "body",
            "-o",
            tmp_path / "tok-de",
        ]
    )
    result = _run(
        [
            "transfer",
            "--body",
            store / "body",
            "--lang",
            "de",
            "--text",
            tmp_path / "de.txt",
            "--tokenizer",
            tmp_path / "tok-de",
            "-o",
            store / "packs" / "de",
            "--max-steps",
            2,
            "--threads",
            1,
            "--json",
            *FAST,
        ]
    )
    transfer_info = json.loads(result.stdout)
    assert (transfer_info["seq_len"], transfer_info["seq_len_source"]) == (64, "the body's 64 positions")

    train = _write_jsonl(tmp_path / "train.jsonl", _long_rows(EN_TEXT))
    result = _run(
        [
            "finetune",
            "--body",
            store / "body",
            "--pack",
            store / "packs" / "en",
            "--task",
            "classification",
            "--train",
            train,
            "-o",
            store / "tasks" / "t",
            "--max-steps",
            2,
            "--batch-size",
            4,
            "--json",
        ]
    )
    assert "lr 0.001 (default for a body pretrained by embswap (hidden 256, 4 layers)), seq_len 64" in result.stderr
    task = TaskModule.from_pretrained(store / "tasks" / "t")
    assert task.settings["seq_len"] == 64
    assert {k: task.provenance[k] for k in ("lr", "lr_source", "seq_len", "seq_len_source")} == {
        "lr": 1e-3,
        "lr_source": "default for a body pretrained by embswap (hidden 256, 4 layers)",
        "seq_len": 64,
        "seq_len_source": "the body's 64 positions",
    }

    test = _write_jsonl(tmp_path / "test.de.jsonl", _long_rows(DE_TEXT))
    result = _run(
        [
            "evaluate",
            "--body",
            store / "body",
            "--pack",
            store / "packs" / "de",
            "--task",
            store / "tasks" / "t",
            "--data",
            test,
            "--json",
        ]
    )
    assert json.loads(result.stdout)["n"] == 6

    # An explicit length the body cannot read: one line, exit 1, before any training.
    for command in (
        [
            "transfer",
            "--body",
            store / "body",
            "--lang",
            "de",
            "--text",
            tmp_path / "de.txt",
            "--tokenizer",
            tmp_path / "tok-de",
            "-o",
            tmp_path / "never",
            "--max-steps",
            1,
            *FAST,
        ],
        [
            "finetune",
            "--body",
            store / "body",
            "--pack",
            store / "packs" / "en",
            "--task",
            "classification",
            "--train",
            train,
            "-o",
            tmp_path / "never-task",
            "--max-steps",
            1,
        ],
        [
            "evaluate",
            "--body",
            store / "body",
            "--pack",
            store / "packs" / "de",
            "--task",
            store / "tasks" / "t",
            "--data",
            test,
        ],
    ):
        result = runner.invoke(app, [str(a) for a in [*command, "--seq-len", 65]])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and result.stdout == ""
        assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
            "error: seq_len 65 is longer than the body's 64 positions; use --seq-len 64 or less (or leave it out: "
            "the default fits the body)"
        ]
        assert not (tmp_path / "never").exists() and not (tmp_path / "never-task").exists()
