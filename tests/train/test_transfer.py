"""Step 2 (transfer): only the pack trains, variants save and compose, resume is exact."""

import hashlib
import json
from dataclasses import replace

import pytest
import torch

from embswap import LanguagePack, compose, split_model
from embswap.architectures import pack_parameter_names
from embswap.constants import IGNORED_FILES
from embswap.errors import EmbswapError, IncompatibleArtifactError
from embswap.io import tensor_bytes
from embswap.train.anchors import DEFAULT_ANCHOR_PENALTY
from embswap.train.checkpoint import checkpoint_dir_for
from embswap.train.loop import CURVE_NAME, LOG_NAME
from embswap.train.tokenizer import train_tokenizer
from embswap.train.transfer import (
    LossTerm,
    TransferConfig,
    register_objective,
    run_transfer,
    saved_tokenizer,
)
from tests.helpers.models import DE_TEXT, FAMILIES, make_mlm

SMALL = dict(seq_len=32, batch_size=4, lr=1e-2, progress=False, checkpoint_every=None)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def de_tokenizer(body, vocab_size=120):
    family = body.family
    return train_tokenizer(
        DE_TEXT,
        vocab_size + (256 if family == "roberta" else 0),
        family=family,
        special_ids=body.special_tokens,
        min_frequency=1,
    )


@pytest.fixture(scope="module")
def bert():
    model, tokenizer = make_mlm("bert")
    body, en_pack = split_model(model, tokenizer, "en")
    return body, en_pack, de_tokenizer(body)


@pytest.mark.parametrize("name", FAMILIES)
def test_only_pack_tensors_change(tmp_path, name):
    model, tokenizer = make_mlm(name)
    body, en_pack = split_model(model, tokenizer, "en")
    before = {k: v.clone() for k, v in body.tensors.items()}
    outcome = run_transfer(
        body,
        de_tokenizer(body),
        DE_TEXT,
        TransferConfig(language="de", max_steps=4, **SMALL),
        output=tmp_path / "de",
        reference_pack=en_pack,
    )
    live = outcome.model
    aliases = pack_parameter_names(live)
    pack_names = set(aliases["word_embeddings"]) | set(aliases["output_bias"])
    prefix = "" if live is not live.base_model else f"{live.base_model_prefix}."
    for key, value in live.state_dict().items():
        if key in pack_names:
            continue
        assert torch.equal(value, before[prefix + key]), key  # every body tensor, bit for bit
    assert all(torch.equal(before[k], body.tensors[k]) for k in before)
    assert not torch.equal(outcome.pack.word_embeddings, outcome.init.word_embeddings)
    assert not torch.equal(outcome.pack.output_bias, outcome.init.output_bias)
    assert all(not p.requires_grad for n, p in live.named_parameters() if n not in pack_names)


def test_pack_folder_provenance_and_log(tmp_path, bert):
    body, en_pack, de_tok = bert
    outcome = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(language="de", init="overlap", max_steps=6, **SMALL),
        output=tmp_path / "packs" / "de",
        reference_pack=en_pack,
        eval_texts=DE_TEXT[:8],
        data_description="fixture",
    )
    folder = tmp_path / "packs" / "de"
    loaded = LanguagePack.from_pretrained(folder)  # verifies hashes; log and curve are ignorable extras
    assert torch.equal(loaded.word_embeddings, outcome.pack.word_embeddings)
    assert {LOG_NAME, CURVE_NAME} <= IGNORED_FILES
    assert (folder / CURVE_NAME).read_bytes()[:4] == b"\x89PNG"
    records = [json.loads(line) for line in (folder / LOG_NAME).read_text().splitlines()]
    assert [r["step"] for r in records if "eval_mlm_loss" in r] == [0, 6]
    prov = loaded.provenance
    assert prov["init"]["method"] == "overlap" and prov["init"]["counts"] == outcome.init.counts
    assert prov["init"]["counts"]["special"] == 5 and prov["init"]["reference_pack"] == "en"
    assert prov["steps"] == 6 and prov["tokens_seen"] > 0 and prov["seed"] == 0 and prov["lr"] == 1e-2
    assert prov["objective"] == "mlm" and prov["data"]["source"] == "fixture" and prov["data"]["texts"] == 32
    assert prov["mlm_loss"]["eval_initial"] is not None and prov["mlm_loss"]["eval_final"] is not None
    # Special rows start as the reference pack's, so [CLS]/[SEP]/... line up with English.
    for token_id in body.special_tokens.values():
        assert torch.equal(outcome.init.word_embeddings[token_id], en_pack.word_embeddings[token_id])
    assert checkpoint_dir_for(folder).is_dir() and saved_tokenizer(folder).get_vocab() == de_tok.get_vocab()


def test_pos_and_adapters_packs_save_load_and_compose(tmp_path, bert):
    body, en_pack, de_tok = bert
    outcome = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(language="de", pos=True, adapters=True, max_steps=4, **SMALL),
        output=tmp_path / "de",
        reference_pack=en_pack,
    )
    pack = LanguagePack.from_pretrained(tmp_path / "de")
    assert pack.position_embeddings is not None and pack.adapter_config is not None
    assert not torch.equal(pack.position_embeddings, body.tensors["bert.embeddings.position_embeddings.weight"])
    for key, value in outcome.pack.adapter_tensors.items():
        assert torch.equal(pack.adapter_tensors[key], value)
    composed, tokenizer = compose(body, pack)
    batch = tokenizer(DE_TEXT[:3], padding=True, return_tensors="pt")
    live = outcome.model.eval()
    with torch.no_grad():
        assert torch.equal(composed(**batch).logits, live(**batch).logits)
    assert outcome.pack.provenance["pos"] and outcome.pack.provenance["adapters"]


def test_pos_only_pack_composes(tmp_path, bert):
    body, en_pack, de_tok = bert
    outcome = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(language="de", pos=True, max_steps=3, **SMALL),
        output=tmp_path / "de",
    )
    composed, tokenizer = compose(body, tmp_path / "de")
    batch = tokenizer(DE_TEXT[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(composed(**batch).logits, outcome.model.eval()(**batch).logits)


def test_frozen_anchors_do_not_move(tmp_path, bert):
    body, en_pack, de_tok = bert
    outcome = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(language="de", init="overlap", anchors="frozen", max_steps=5, **SMALL),
        output=None,
        reference_pack=en_pack,
    )
    anchored = sorted(outcome.init.anchored)
    free = [i for i in range(len(de_tok)) if i not in outcome.init.anchored]
    assert len(anchored) == outcome.init.counts["special"] + outcome.init.counts["overlap"] > 5
    assert torch.equal(outcome.pack.word_embeddings[anchored], outcome.init.word_embeddings[anchored])
    assert torch.equal(outcome.pack.output_bias[anchored], outcome.init.output_bias[anchored])
    assert not torch.equal(outcome.pack.word_embeddings[free], outcome.init.word_embeddings[free])


def _drift(outcome, rows):
    return (outcome.pack.word_embeddings[rows] - outcome.init.word_embeddings[rows]).norm().item()


def _hashes(state, skip):
    return {k: hashlib.sha256(tensor_bytes(v)).hexdigest() for k, v in state.items() if k not in skip}


def test_anchor_penalty_moves_anchored_rows_less_than_free_more_than_frozen(bert):
    body, en_pack, de_tok = bert
    runs = {
        mode: run_transfer(
            body,
            de_tok,
            DE_TEXT,
            TransferConfig(language="de", init="overlap", anchors=mode, max_steps=5, **SMALL),
            output=None,
            reference_pack=en_pack,
        )
        for mode in ("free", "penalty", "frozen")
    }
    anchored = sorted(runs["free"].init.anchored)
    assert len(anchored) == runs["free"].init.counts["special"] + runs["free"].init.counts["overlap"] > 5
    drift = {mode: _drift(outcome, anchored) for mode, outcome in runs.items()}
    assert drift["frozen"] == 0.0 < drift["penalty"] < 0.5 * drift["free"], drift
    penalty = runs["penalty"]
    assert penalty.pack.provenance["anchors"] == "penalty"
    assert penalty.pack.provenance["anchor_penalty"] == DEFAULT_ANCHOR_PENALTY == 10.0
    assert penalty.pack.provenance["loss_terms"] == {"mlm": 1.0, "anchor_penalty": 10.0}
    assert "anchor_penalty" not in runs["free"].pack.provenance
    assert all("anchor_penalty_loss" in r for r in penalty.result.history if "loss" in r)
    # Only the pack's rows and output bias moved: every other tensor of the live model hashes as the body's.
    live = penalty.model
    aliases = pack_parameter_names(live)
    pack_names = set(aliases["word_embeddings"]) | set(aliases["output_bias"])
    assert _hashes(live.state_dict(), pack_names) == _hashes(body.tensors, pack_names)
    assert not torch.equal(penalty.pack.output_bias, penalty.init.output_bias)


def test_anchor_penalty_weight_is_recorded_and_checked(bert):
    body, en_pack, de_tok = bert
    outcome = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(language="de", init="overlap", anchors="penalty", anchor_penalty=2.5, max_steps=1, **SMALL),
        output=None,
        reference_pack=en_pack,
    )
    assert outcome.pack.provenance["anchor_penalty"] == 2.5
    with pytest.raises(EmbswapError, match="applies to anchors 'penalty', not 'free'"):
        run_transfer(
            body,
            de_tok,
            DE_TEXT,
            TransferConfig(language="de", anchor_penalty=2.5, max_steps=1, **SMALL),
            output=None,
        )
    with pytest.raises(EmbswapError, match="weight is -1.0; give a positive number"):
        run_transfer(
            body,
            de_tok,
            DE_TEXT,
            TransferConfig(language="de", init="overlap", anchors="penalty", anchor_penalty=-1, max_steps=1, **SMALL),
            output=None,
            reference_pack=en_pack,
        )
    with pytest.raises(EmbswapError, match="this init anchored none; use --init overlap"):
        run_transfer(
            body,
            de_tok,
            DE_TEXT,
            TransferConfig(language="de", anchors="penalty", max_steps=1, **SMALL),
            output=None,
        )


def test_resume_is_bit_identical(tmp_path, bert):
    body, en_pack, de_tok = bert
    calls = {"n": 0}

    def crash_on_fifth_step(model, batch):
        calls["n"] += 1
        if crash["on"] and calls["n"] == 5:
            raise RuntimeError("power cut")
        return torch.zeros(())

    crash = {"on": False}
    config = TransferConfig(
        language="de",
        init="overlap",
        max_steps=6,
        seq_len=32,
        batch_size=4,
        lr=1e-2,
        progress=False,
        checkpoint_every=3,
        adapters=True,
    )
    common = dict(reference_pack=en_pack, extra_loss=LossTerm("probe", crash_on_fifth_step, weight=1.0))
    reference = run_transfer(body, de_tok, DE_TEXT, config, output=tmp_path / "a", **common).pack
    crash["on"], calls["n"] = True, 0
    with pytest.raises(RuntimeError, match="power cut"):
        run_transfer(body, de_tok, DE_TEXT, config, output=tmp_path / "b", **common)
    assert not (tmp_path / "b").exists()  # nothing half-written where the pack goes
    crash["on"] = False
    outcome = run_transfer(body, de_tok, DE_TEXT, config, output=tmp_path / "b", resume=True, **common)
    assert outcome.result.resumed_from == 3
    resumed = outcome.pack
    assert torch.equal(resumed.word_embeddings, reference.word_embeddings)
    assert torch.equal(resumed.output_bias, reference.output_bias)
    for key, value in reference.adapter_tensors.items():
        assert torch.equal(resumed.adapter_tensors[key], value), key
    assert resumed.provenance["tokens_seen"] == reference.provenance["tokens_seen"]


def test_constant_schedule_resumed_with_more_steps_equals_one_long_run(tmp_path, bert):
    """Learning curves resume a run with a higher max_steps; with a constant rate that is one long run."""
    body, en_pack, de_tok = bert
    config = TransferConfig(language="de", warmup_steps=0, schedule="constant", **SMALL)
    long = run_transfer(
        body, de_tok, DE_TEXT, replace(config, max_steps=6), output=tmp_path / "long", reference_pack=en_pack
    ).pack
    run_transfer(body, de_tok, DE_TEXT, replace(config, max_steps=3), output=tmp_path / "seg", reference_pack=en_pack)
    outcome = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        replace(config, max_steps=6),
        output=tmp_path / "seg",
        reference_pack=en_pack,
        resume=True,
    )
    assert outcome.result.resumed_from == 3 and outcome.result.step == 6
    assert torch.equal(outcome.pack.word_embeddings, long.word_embeddings)
    assert outcome.pack.provenance["schedule"] == "constant"
    with pytest.raises(EmbswapError, match="schedule"):  # a linear-schedule run does not resume as constant
        run_transfer(
            body,
            de_tok,
            DE_TEXT,
            replace(config, max_steps=9, schedule="linear"),
            output=tmp_path / "seg",
            reference_pack=en_pack,
            resume=True,
        )


def test_tokenizer_with_other_special_ids_is_refused(bert):
    body, _, _ = bert
    wrong = train_tokenizer(
        DE_TEXT, 120, family="bert", special_ids={"pad": 4, "unk": 3, "cls": 2, "sep": 1, "mask": 0}, min_frequency=1
    )
    with pytest.raises(IncompatibleArtifactError, match="embswap tokenizer train --body"):
        run_transfer(body, wrong, DE_TEXT, TransferConfig(language="de", max_steps=1, **SMALL), output=None)


def test_objectives_plug_in_without_touching_the_loop(tmp_path, bert):
    body, _, de_tok = bert
    seen = []

    def build(context):
        def loss(model, batch):
            seen.append(batch["input_ids"].shape)
            return model.get_input_embeddings().weight.pow(2).mean()

        return [LossTerm("l2", loss, weight=context.options.get("l2_weight", 1.0))]

    register_objective("l2", build)
    outcome = run_transfer(
        body,
        de_tok,
        DE_TEXT,
        TransferConfig(
            language="de", objective="mlm+l2", objective_options={"l2_weight": 0.5}, max_steps=3, log_every=1, **SMALL
        ),
        output=None,
    )
    assert len(seen) == 3
    assert outcome.pack.provenance["loss_terms"] == {"mlm": 1.0, "l2": 0.5}
    assert all("mlm_loss" in r and "l2_loss" in r for r in outcome.result.history if "loss" in r)
    with pytest.raises(EmbswapError, match="unknown objective"):
        run_transfer(
            body,
            de_tok,
            DE_TEXT,
            TransferConfig(language="de", objective="mlm+nope", max_steps=1, **SMALL),
            output=None,
        )


def test_too_long_sequences_are_refused(bert):
    body, _, de_tok = bert
    with pytest.raises(EmbswapError, match="seq-len"):
        run_transfer(
            body, de_tok, DE_TEXT, TransferConfig(language="de", max_steps=1, **{**SMALL, "seq_len": 4096}), output=None
        )


@pytest.mark.slow
def test_short_run_on_real_text_lowers_held_out_loss(tmp_path):
    """Bible German on a tiny random body: 200 steps cut the held-out MLM perplexity by more than 2.5x.

    (A random body can only teach the pack token statistics, so the loss settles near 6.4 from 7.6.)
    """
    bible = pytest.importorskip("embswap.data.bible")
    try:
        texts = bible.resolve_source("bible:de:train")[:4000]
        held_out = bible.resolve_source("bible:de:dev")[:300]
    except EmbswapError as err:
        pytest.skip(f"the offline Bible is not installed ({err})")
    model, tokenizer = make_mlm("bert")
    body, _ = split_model(model, tokenizer, "en")
    de_tok = train_tokenizer(texts, 2000, family="bert", special_ids=body.special_tokens)
    outcome = run_transfer(
        body,
        de_tok,
        texts,
        TransferConfig(
            language="de", max_steps=200, seq_len=64, batch_size=16, lr=1e-2, progress=False, checkpoint_every=None
        ),
        output=tmp_path / "de",
        eval_texts=held_out,
    )
    losses = outcome.pack.provenance["mlm_loss"]
    assert losses["eval_final"] < losses["eval_initial"] - 0.92, losses  # ln 2.5 = 0.92


def test_empty_text_is_refused_before_training(bert):
    body, _, de_tok = bert
    with pytest.raises(EmbswapError, match="no text to train on"):
        run_transfer(body, de_tok, ["", "  "], TransferConfig(language="de", max_steps=1, **SMALL), output=None)
