"""Step 1: pretraining from scratch writes a store that composes exactly; joint baselines; resume."""

import json
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from embswap import Store, compose
from embswap.architectures import new_config
from embswap.artifacts import load_tokenizer
from embswap.cli.main import app
from embswap.errors import EmbswapError, IncompatibleArtifactError, TrainingError, UnsupportedModelError
from embswap.train import pretrain as pretrain_mod
from embswap.train.pretrain import PRESETS, PretrainConfig, resolve_preset, run_pretrain
from embswap.train.tokenizer import train_tokenizer
from tests.helpers.models import DE_TEXT, EN_TEXT

FR_TEXT = [
    "Au commencement, Dieu créa les cieux et la terre.",
    "La terre était informe et vide, et les ténèbres couvraient l'abîme.",
    "Dieu dit: que la lumière soit! Et la lumière fut.",
    "Dieu vit que la lumière était bonne.",
    "Dieu appela la lumière jour, et il appela les ténèbres nuit.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
] * 4

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
FAST = dict(preset=TINY, vocab_size=150, seq_len=32, batch_size=8, lr=2e-3, progress=False)

runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny matrices on a shared 2-core machine: a second thread only adds contention.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _logits(model, tokenizer, texts, table=None, language=None):
    batch = tokenizer(texts, padding=True, truncation=True, max_length=FAST["seq_len"], return_tensors="pt")
    if table is not None:
        batch["input_ids"] = table.to_table(language, batch["input_ids"])
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return out.logits, out.hidden_states[-1]


def test_presets_and_fresh_configs():
    assert resolve_preset("tiny") == ("tiny", PRESETS["tiny"])
    assert PRESETS["tiny"] == dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024)
    assert resolve_preset(TINY) == ("custom", TINY)
    with pytest.raises(EmbswapError, match="unknown preset"):
        resolve_preset("huge")
    with pytest.raises(EmbswapError, match="missing"):
        resolve_preset({"hidden_size": 32})
    bert_ids = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    roberta_ids = {"cls": 0, "pad": 1, "sep": 2, "unk": 3, "mask": 4}
    assert new_config("bert", TINY, 100, bert_ids, 64).max_position_embeddings == 64
    config = new_config("roberta", TINY, 100, roberta_ids, 64)
    assert config.max_position_embeddings == 66 and config.pad_token_id == 1  # positions start at pad + 1
    with pytest.raises(UnsupportedModelError, match="distilbert"):
        new_config("distilbert", TINY, 100, bert_ids, 64)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_single_language_store_composes_exactly(tmp_path, family):
    fast = {**FAST, "vocab_size": 150 + (256 if family == "roberta" else 0)}
    out = run_pretrain(
        {"en": EN_TEXT},
        tmp_path / "store",
        PretrainConfig(family=family, max_steps=6, eval_fraction=0.1, **fast),
    )
    store = Store(tmp_path / "store")
    assert store.languages == ["en"]
    composed, tokenizer = compose(store.body_path, store.pack_path("en"))
    expected, _ = _logits(out.model, tokenizer, EN_TEXT[:3])
    got, _ = _logits(composed, tokenizer, EN_TEXT[:3])
    assert torch.equal(expected, got)
    prov = store.body.provenance
    assert prov["stage"] == "pretrain" and prov["baseline"] == "monolingual" and prov["preset"] == "custom"
    assert prov["steps"] == 6 and prov["tokens_seen"] > 0 and prov["seed"] == 0
    assert prov["languages"] == ["en"] and prov["dims"] == TINY
    assert prov["mlm_loss"]["eval_initial"] is not None and prov["mlm_loss"]["eval_final"] is not None
    assert (store.body_path / "training_log.jsonl").is_file() and (store.body_path / "learning_curve.png").is_file()
    assert store.pack("en").provenance["stage"] == "pretrain"


def test_mlm_loss_decreases(tmp_path):
    out = run_pretrain(
        {"en": EN_TEXT},
        tmp_path / "store",
        PretrainConfig(max_steps=60, eval_fraction=0.15, checkpoint_every=None, **FAST),
    )
    train = [r["loss"] for r in out.result.history if "loss" in r]
    losses = out.body.provenance["mlm_loss"]
    assert train[-1] < train[0] - 0.5
    assert losses["eval_final"] < losses["eval_initial"] - 0.3


def test_joint_vocabulary_packs_are_identical_and_compose(tmp_path):
    texts = {"en": EN_TEXT, "de": DE_TEXT, "fr": FR_TEXT}
    out = run_pretrain(texts, tmp_path / "store", PretrainConfig(vocab="joint", max_steps=4, **FAST))
    store = Store(tmp_path / "store")
    assert store.languages == ["de", "en", "fr"]
    packs = {lang: store.pack(lang) for lang in texts}
    vocab = packs["en"].tokenizer.get_vocab()
    assert all(p.tokenizer.get_vocab() == vocab for p in packs.values())
    assert {"Gott", "God", "Dieu"} <= set(vocab)  # one vocabulary learned from every language
    table = out.model.get_input_embeddings().weight
    for lang, pack in packs.items():
        assert torch.equal(pack.word_embeddings, table) and pack.provenance["baseline"] == "JointMulti-joint"
        composed, tokenizer = compose(store.body, pack)
        expected, _ = _logits(out.model, tokenizer, texts[lang][:2])
        assert torch.equal(_logits(composed, tokenizer, texts[lang][:2])[0], expected)
    assert out.body.provenance["vocab"]["mode"] == "joint"


def test_disjoint_vocabulary_packs_are_slices_of_the_table(tmp_path):
    texts = {"en": EN_TEXT, "de": DE_TEXT}
    out = run_pretrain(
        texts,
        tmp_path / "store",
        PretrainConfig(vocab="disjoint", max_steps=4, eval_fraction=0.0, **FAST),
    )
    store = Store(tmp_path / "store")
    packs = {lang: store.pack(lang) for lang in texts}
    # Each tokenizer was trained on its own language alone: every token is a piece of that language's text.
    for lang, pack in packs.items():
        corpus = " ".join(texts[lang])
        ordinary = [t for t in pack.tokenizer.get_vocab() if t not in pack.tokenizer.all_special_tokens]
        assert all(t.removeprefix("##") in corpus for t in ordinary)
    assert "Gott" in packs["de"].tokenizer.get_vocab() and "Gott" not in packs["en"].tokenizer.get_vocab()
    table = out.model.get_input_embeddings().weight.detach()
    bias = out.model.get_output_embeddings().bias.detach()
    en_rows, de_rows = out.table.rows("en"), out.table.rows("de")
    assert out.table.size == len(packs["en"].tokenizer) + len(packs["de"].tokenizer) - 5 == table.shape[0]
    assert set(en_rows.tolist()) & set(de_rows.tolist()) == set(range(5))  # only the special rows are shared
    for lang, rows in (("en", en_rows), ("de", de_rows)):
        pack = packs[lang]
        assert torch.equal(pack.word_embeddings, table[rows]) and torch.equal(pack.output_bias, bias[rows])
        assert pack.provenance["baseline"] == "JointPair-disjoint"
        composed, tokenizer = compose(store.body, pack)
        full_logits, full_hidden = _logits(out.model, tokenizer, texts[lang][:2], out.table, lang)
        logits, hidden = _logits(composed, tokenizer, texts[lang][:2])
        assert torch.equal(hidden, full_hidden)
        torch.testing.assert_close(logits, full_logits[..., rows], rtol=0, atol=1e-5)
    assert torch.equal(packs["en"].word_embeddings[:5], packs["de"].word_embeddings[:5])


def test_given_tokenizers_positions_and_overwrite(tmp_path):
    tok = train_tokenizer(EN_TEXT, 150)
    with pytest.raises(IncompatibleArtifactError, match="one tokenizer per language"):
        run_pretrain(
            {"en": EN_TEXT, "de": DE_TEXT},
            tmp_path / "s",
            PretrainConfig(vocab="disjoint", max_steps=1, **FAST),
            tokenizer=tok,
        )
    out = run_pretrain(
        {"en": EN_TEXT},
        tmp_path / "s",
        PretrainConfig(max_steps=1, max_positions=48, **FAST),
        tokenizer=tok,
    )
    assert out.packs["en"].tokenizer is tok
    assert out.body.model_config["max_position_embeddings"] == 48
    with pytest.raises(EmbswapError, match="already has a body"):
        run_pretrain({"en": EN_TEXT}, tmp_path / "s", PretrainConfig(max_steps=1, **FAST), tokenizer=tok)
    run_pretrain({"en": EN_TEXT}, tmp_path / "s", PretrainConfig(max_steps=1, **FAST), tokenizer=tok, overwrite=True)


class _Interrupt(Exception):
    pass


def test_resume_is_bit_identical(tmp_path, monkeypatch):
    texts = {"en": EN_TEXT, "de": DE_TEXT}
    config = PretrainConfig(vocab="disjoint", max_steps=12, checkpoint_every=5, eval_fraction=0.1, **FAST)
    original = pretrain_mod.MixedBatches.__call__

    def crash_at_8(self, step, *args):
        if step == 8:
            raise _Interrupt
        return original(self, step, *args)

    monkeypatch.setattr(pretrain_mod.MixedBatches, "__call__", crash_at_8)
    with pytest.raises(_Interrupt):
        run_pretrain(texts, tmp_path / "b", config)
    monkeypatch.setattr(pretrain_mod.MixedBatches, "__call__", original)
    assert not (tmp_path / "b" / "body").exists()
    with pytest.raises(TrainingError, match="lr"):
        run_pretrain(texts, tmp_path / "b", replace(config, lr=1e-3), resume=True)
    resumed = run_pretrain(texts, tmp_path / "b", config, resume=True)
    assert resumed.result.resumed_from == 5 and resumed.result.step == 12

    # Tokenizer training is not repeatable (tokenizers' hash-map order), so the resumed run reuses the
    # ones it saved; an uninterrupted run given those same tokenizers ends with the same weights.
    saved = tmp_path / "b" / ".body.checkpoint" / pretrain_mod.TOKENIZERS_SUBDIR
    tokenizers = {lang: load_tokenizer(saved / lang) for lang in texts}
    assert all(resumed.packs[lang].tokenizer.get_vocab() == tokenizers[lang].get_vocab() for lang in texts)
    straight = run_pretrain(texts, tmp_path / "a", config, tokenizer=tokenizers)
    assert resumed.body.fingerprint == straight.body.fingerprint
    for lang in texts:
        assert torch.equal(resumed.packs[lang].word_embeddings, straight.packs[lang].word_embeddings)
        assert torch.equal(resumed.packs[lang].output_bias, straight.packs[lang].output_bias)


def test_cli_pretrain(tmp_path):
    (tmp_path / "en.txt").write_text("\n".join(EN_TEXT), encoding="utf-8")
    (tmp_path / "de.txt").write_text("\n".join(DE_TEXT), encoding="utf-8")
    common = ["--vocab-size", "150", "--max-steps", "3", "--seq-len", "32", "--batch-size", "4", "--quiet"]
    result = runner.invoke(
        app,
        [
            "pretrain",
            "--lang",
            "en",
            "--text",
            str(tmp_path / "en.txt"),
            "-o",
            str(tmp_path / "mono"),
            "--json",
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "tokenizing 31 en lines" not in result.stderr.splitlines()  # --quiet: no progress, no step lines
    info = json.loads(result.stdout)
    assert info["steps"] == 3 and info["preset"] == "tiny" and info["baseline"] == "monolingual"
    assert Store(tmp_path / "mono").languages == ["en"]

    args = ["pretrain", "--lang", "en,de", "--text", f"en={tmp_path / 'en.txt'}", "--text", f"de={tmp_path / 'de.txt'}"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "pair"), "--vocab", "disjoint", *common])
    assert result.exit_code == 0, result.output
    store = Store(tmp_path / "pair")
    assert store.languages == ["de", "en"] and store.body.provenance["baseline"] == "JointPair-disjoint"

    result = runner.invoke(
        app, ["pretrain", "--lang", "en,de", "--text", str(tmp_path / "en.txt"), "-o", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "LANG=" in result.output
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "x"), "--vocab", "shared"])
    assert result.exit_code == 2


def test_cli_pretrain_shows_the_library_log_lines_on_stderr(tmp_path):
    (tmp_path / "en.txt").write_text("\n".join(EN_TEXT), encoding="utf-8")
    args = ["pretrain", "--lang", "en", "--text", str(tmp_path / "en.txt"), "-o", str(tmp_path / "mono"), "--json"]
    result = runner.invoke(
        app, [*args, "--vocab-size", "150", "--max-steps", "1", "--seq-len", "32", "--batch-size", "4"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    # logged by embswap.train.pretrain; the CLI's handler (cli/_common.py) prints them as they are
    assert lines[1:3] == ["training a 150-token tokenizer for all languages", "tokenizing 31 en lines"]
    assert json.loads(result.stdout)["steps"] == 1
