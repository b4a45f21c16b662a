"""Step 3: what trains and what stays bit-identical in each mode, noise, robust packs, resume, QA."""

import json

import pytest
import torch

from embswap import LanguagePack, TaskModule, compose, split_model
from embswap.errors import DataError, IncompatibleArtifactError
from embswap.evaluate import evaluate, score_model
from embswap.tasks.data import read_squad
from embswap.tasks.heads import model_inputs
from embswap.train.finetune import FinetuneConfig, FinetuneRun, checkpoint_dir_for, finetune, relearn_l1_packs
from tests.helpers.models import DE_TEXT, EN_TEXT, make_mlm

ROWS = [{"text": t, "label": "light" if "light" in t else "other"} for t in EN_TEXT]


@pytest.fixture(scope="module")
def bert_parts():
    model, tokenizer = make_mlm("bert")
    return split_model(model, tokenizer, "en")


def _config(**overrides):
    base = dict(
        task="classification", epochs=1, lr=1e-3, batch_size=8, seq_len=32, progress=False, checkpoint_every=None
    )
    return FinetuneConfig(**{**base, **overrides})


def _run(body, pack, tmp_path, rows=ROWS, extra_packs=(), **overrides):
    run = FinetuneRun(body, pack, rows, _config(**overrides), extra_packs=extra_packs)
    run.train(tmp_path / "ckpt")
    return run


def _logits(model, tokenizer, texts=EN_TEXT[:5]):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**model_inputs(model, batch)).logits


def test_full_mode_freezes_word_embeddings_but_trains_special_rows(tmp_path, bert_parts):
    body, pack = bert_parts
    run = _run(body, pack, tmp_path, noise=0.1)
    task = run.task_module()
    # The matrix inside the live model was never touched (not even its special rows).
    assert torch.equal(run.model.get_input_embeddings().weight, pack.word_embeddings)
    assert sorted(task.special_rows) == sorted(body.special_tokens.values())
    for role in ("cls", "sep"):  # the rows every training example uses
        token_id = body.special_tokens[role]
        assert not torch.equal(task.special_rows[token_id], pack.word_embeddings[token_id]), role
    # The composed model: every non-special row bit-identical, special rows from the task.
    composed, _ = compose(body, pack, task)
    matrix = composed.get_input_embeddings().weight
    special = torch.tensor(sorted(task.special_rows))
    others = torch.ones(matrix.shape[0], dtype=torch.bool)
    others[special] = False
    assert torch.equal(matrix[others], pack.word_embeddings[others])
    for token_id, row in task.special_rows.items():
        assert torch.equal(matrix[token_id], row)
    assert task.body_delta and all(name in body.tensors for name in task.body_delta)
    assert sorted(task.head) == [
        "bert.pooler.dense.bias",
        "bert.pooler.dense.weight",
        "classifier.bias",
        "classifier.weight",
    ]


def test_task_module_round_trip_and_composed_logits_equal_live(tmp_path, bert_parts):
    body, pack = bert_parts
    run = _run(body, pack, tmp_path, noise=0.2)
    task = run.task_module()
    task.save_pretrained(tmp_path / "task")
    loaded = TaskModule.from_pretrained(tmp_path / "task")
    for name in task.head:
        assert torch.equal(task.head[name], loaded.head[name])
    for name in task.body_delta:
        assert torch.equal(task.body_delta[name], loaded.body_delta[name])
    for token_id in task.special_rows:
        assert torch.equal(task.special_rows[token_id], loaded.special_rows[token_id])
    assert loaded.labels == ["light", "other"] and loaded.settings["noise"] == 0.2
    composed, tokenizer = compose(body, pack, loaded)
    run.model.eval()
    # The live model still carries its noise hooks: in eval mode they add nothing.
    assert torch.equal(_logits(run.model, tokenizer), _logits(composed, tokenizer))


def test_noise_changes_training_and_runs_are_reproducible(tmp_path, bert_parts):
    body, pack = bert_parts
    clean = _run(body, pack, tmp_path / "a", noise=0.0).task_module()
    clean_again = _run(body, pack, tmp_path / "b", noise=0.0).task_module()
    noisy = _run(body, pack, tmp_path / "c", noise=0.5).task_module()
    name = "classifier.weight"
    assert torch.equal(clean.head[name], clean_again.head[name])
    assert not torch.equal(clean.head[name], noisy.head[name])


def test_adapter_mode_leaves_every_body_tensor_identical(tmp_path, bert_parts):
    body, pack = bert_parts
    run = _run(body, pack, tmp_path, mode="adapter", lr=1e-2)
    task = run.task_module()
    state = run.model.state_dict()
    for name, tensor in body.tensors.items():
        if name in state:
            assert torch.equal(state[name].cpu(), tensor), name
    assert task.mode == "adapter" and not task.body_delta and not task.special_rows
    assert task.adapter_tensors and all(".adapters.task." in n for n in task.adapter_tensors)
    composed, tokenizer = compose(body, pack, task)
    assert torch.equal(_logits(run.model, tokenizer), _logits(composed, tokenizer))


def test_pos_pack_table_stays_the_packs(tmp_path, bert_parts):
    body, pack = bert_parts
    name = "bert.embeddings.position_embeddings.weight"
    pos_pack = LanguagePack(
        language="en",
        tokenizer=pack.tokenizer,
        word_embeddings=pack.word_embeddings,
        body_fingerprint=body.fingerprint,
        output_bias=pack.output_bias,
        position_embeddings=body.tensors[name] + 0.5,
    )
    run = _run(body, pos_pack, tmp_path)
    task = run.task_module()
    assert name not in task.body_delta
    assert torch.equal(run.model.state_dict()[name], pos_pack.position_embeddings)
    composed, tokenizer = compose(body, pos_pack, task)
    run.model.eval()
    assert torch.equal(_logits(run.model, tokenizer), _logits(composed, tokenizer))


def test_frozen_mode_trains_only_the_head(tmp_path, bert_parts):
    body, pack = bert_parts
    run = _run(body, pack, tmp_path, mode="frozen")
    assert set(run.trained) == set(run.head_names)
    task = run.task_module()
    assert not task.body_delta and not task.special_rows and task.adapter_tensors is None


def test_robust_packs_alternate_by_pointer(tmp_path, bert_parts):
    body, pack = bert_parts
    relearned = split_model(*make_mlm("bert", seed=1), "en")[1]
    relearned.body_fingerprint = body.fingerprint  # another matrix for the same vocabulary
    run = FinetuneRun(body, pack, ROWS, _config(max_steps=5), extra_packs=[relearned])
    tables = [t.data_ptr() for t in (pack.word_embeddings, relearned.word_embeddings)]
    seen = []
    embedding = run.model.get_input_embeddings()
    embedding.register_forward_pre_hook(
        lambda module, args: seen.append(module.weight.data_ptr()) if module.training else None
    )
    run.train(tmp_path / "ckpt")
    # No copies: the embedding module reads the packs' own storage, one batch each in turn.
    assert run.packs.tables[1].data_ptr() == tables[1]
    expected = [run.packs.tables[i % 2].data_ptr() for i in range(5)]
    assert seen == expected and len(set(seen)) == 2
    assert run.packs.counts == [3, 2]
    task = run.task_module()
    assert task.provenance["batches_per_pack"] == [3, 2]
    assert [(e["name"], e["language"]) for e in task.provenance["trained_with_packs"]] == [
        ("en", "en"),
        ("en-robust-1", "en"),
    ]
    assert run.model.get_input_embeddings().weight is run.packs.tables[0]  # back on the original pack


RELEARN = dict(max_steps=2, batch_size=4, seq_len=32, progress=False)


def _sha256(tensor):
    import hashlib

    from embswap.io import tensor_bytes

    return hashlib.sha256(tensor_bytes(tensor)).hexdigest()


def test_relearned_packs_are_stored_alternated_recorded_and_reused(tmp_path, bert_store, monkeypatch):
    import embswap.train.robust as robust

    en = bert_store.pack("en")
    packs = relearn_l1_packs(bert_store, "en", EN_TEXT, 2, seed=5, **RELEARN)
    assert bert_store.languages == ["en", "en-robust-1", "en-robust-2"]
    assert [p.provenance["seed"] for p in packs] == [6, 7] and [p.language for p in packs] == ["en", "en"]
    assert all(p.provenance["init"]["method"] == "random" and p.provenance["steps"] == 2 for p in packs)
    assert all(p.tokenizer.get_vocab() == en.tokenizer.get_vocab() for p in packs)
    matrices = [en.word_embeddings, *(p.word_embeddings for p in packs)]
    assert len({_sha256(m) for m in matrices}) == 3
    assert not any(p.name.endswith(".checkpoint") for p in (bert_store.path / "packs").iterdir())

    run = _run(bert_store.body, en, tmp_path, extra_packs=packs, max_steps=7)
    assert run.packs.counts == [3, 2, 2]  # training forwards per pack: steps 0, 3, 6 / 1, 4 / 2, 5
    task = run.task_module()
    assert task.provenance["batches_per_pack"] == [3, 2, 2]
    assert task.provenance["trained_with_packs"] == [
        {"name": name, "language": "en", "fingerprint": _sha256(m)}
        for name, m in zip(["en", "en-robust-1", "en-robust-2"], matrices)
    ]

    # A second run reuses the stored packs: no training, files untouched, text not needed.
    stamps = {f: f.stat().st_mtime_ns for f in (bert_store.path / "packs").rglob("*") if f.is_file()}

    def no_training(*args, **kwargs):
        raise AssertionError("a stored robust pack was re-learned")

    monkeypatch.setattr(robust, "run_transfer", no_training)
    again = relearn_l1_packs(bert_store, en, None, 2, seed=5, **RELEARN)
    assert [_sha256(p.word_embeddings) for p in again] == [_sha256(m) for m in matrices[1:]]
    assert stamps == {f: f.stat().st_mtime_ns for f in (bert_store.path / "packs").rglob("*") if f.is_file()}


def test_relearn_errors_come_before_any_training(bert_store):
    with pytest.raises(DataError, match=r"robust packs is -1; give 0 or more"):
        relearn_l1_packs(bert_store, "en", EN_TEXT, -1, **RELEARN)
    with pytest.raises(DataError, match=r"re-learning en-robust-1, en-robust-2 needs 'en' text; pass --robust-text"):
        relearn_l1_packs(bert_store, "en", ["", " "], 2, **RELEARN)
    assert bert_store.languages == ["en"]
    assert relearn_l1_packs(bert_store, "en", None, 0) == []
    en = bert_store.pack("en")
    bert_store.save_pack(
        LanguagePack(
            language="de",
            tokenizer=en.tokenizer,
            word_embeddings=en.word_embeddings,
            body_fingerprint=en.body_fingerprint,
            output_bias=en.output_bias,
        ),
        name="en-robust-1",
    )
    with pytest.raises(IncompatibleArtifactError, match="store pack 'en-robust-1' was not re-learned from this 'en'"):
        relearn_l1_packs(bert_store, "en", EN_TEXT, 1, **RELEARN)


def test_aligned_robust_packs_record_their_objective_and_are_not_reused_for_another(tmp_path, bert_store):
    pairs = [{"source": a, "target": b} for a, b in zip(EN_TEXT, EN_TEXT[1:] + EN_TEXT[:1])]
    with pytest.raises(DataError, match=r"objective 'mlm\+align' needs parallel 'en' text .*: pass --robust-parallel"):
        relearn_l1_packs(bert_store, "en", EN_TEXT, 1, objective="mlm+align", **RELEARN)
    assert bert_store.languages == ["en"]  # refused before any training

    packs = relearn_l1_packs(
        bert_store,
        "en",
        EN_TEXT,
        1,
        objective="mlm+align",
        parallel=pairs,
        teacher_cache=str(tmp_path / "cache"),
        **RELEARN,
    )
    assert packs[0].provenance["objective"] == "mlm+align" and packs[0].provenance["steps"] == 2
    again = relearn_l1_packs(bert_store, "en", None, 1, objective="mlm+align", **RELEARN)  # reused: no pairs needed
    assert _sha256(again[0].word_embeddings) == _sha256(packs[0].word_embeddings)
    with pytest.raises(IncompatibleArtifactError, match=r"re-learned with objective 'mlm\+align', not 'mlm'"):
        relearn_l1_packs(bert_store, "en", EN_TEXT, 1, **RELEARN)


def test_resume_ends_with_the_uninterrupted_weights(tmp_path, bert_parts):
    body, pack = bert_parts
    settings = dict(max_steps=6, checkpoint_every=2, noise=0.1)
    full = FinetuneRun(body, pack, ROWS, _config(**settings))
    full.train(tmp_path / "full")
    expected = full.task_module()

    broken = FinetuneRun(body, pack, ROWS, _config(**settings))
    real = broken.batches

    def failing(step, *args):
        if step == 5:
            raise RuntimeError("simulated crash")
        return real(step, *args)

    broken.batches = failing
    with pytest.raises(RuntimeError, match="simulated crash"):
        broken.train(tmp_path / "resumed")
    resumed = FinetuneRun(body, pack, ROWS, _config(**settings))
    result = resumed.train(tmp_path / "resumed", resume=True)
    assert result.resumed_from == 4
    got = resumed.task_module()
    for name in expected.body_delta:
        assert torch.equal(expected.body_delta[name], got.body_delta[name]), name
    for name in expected.head:
        assert torch.equal(expected.head[name], got.head[name]), name


def test_finetune_writes_artifact_log_and_curve(tmp_path, bert_parts):
    body, pack = bert_parts
    out = tmp_path / "tasks" / "genre"
    task = finetune(
        body,
        pack,
        "classification",
        ROWS,
        dev_rows=ROWS[:8],
        output=out,
        epochs=2,
        lr=1e-3,
        batch_size=8,
        seq_len=32,
        progress=False,
    )
    assert (out / "training_log.jsonl").is_file() and (out / "learning_curve.png").is_file()
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert sum("eval_accuracy" in r for r in log) == 2  # dev scored after each epoch
    assert not checkpoint_dir_for(out).exists()  # removed once the run is complete
    assert set(task.provenance["dev_metrics"]) == {"accuracy", "macro_f1"}
    assert task.provenance["steps"] == 8 and task.provenance["epochs"] == 2
    TaskModule.from_pretrained(out)  # the extra files do not break loading


def test_dev_labels_must_be_known(bert_parts):
    body, pack = bert_parts
    with pytest.raises(DataError, match="dev data has label"):
        FinetuneRun(body, pack, ROWS, _config(), dev_rows=[{"text": "x", "label": "unseen"}])
    with pytest.raises(DataError, match="training row 2: missing field 'label'"):
        FinetuneRun(body, pack, [ROWS[0], {"text": "x"}], _config())
    with pytest.raises(DataError, match="unknown mode"):
        _config(mode="partial")


def _squad_file(path):
    paragraphs = []
    for i, context in enumerate(EN_TEXT[:8] + DE_TEXT[:4]):
        word = context.split()[2]
        qa = {
            "id": f"q{i}",
            "question": "Which word is third?",
            "answers": [{"text": word, "answer_start": context.index(word)}],
        }
        paragraphs.append({"context": context, "qas": [qa]})
    path.write_text(
        json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}), encoding="utf-8"
    )
    return path


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_qa_end_to_end(tmp_path, family):
    body, pack = split_model(*make_mlm(family), "en")
    rows = read_squad(_squad_file(tmp_path / "squad.json"))
    config = FinetuneConfig(
        task="qa", max_steps=16, lr=3e-3, batch_size=12, seq_len=32, progress=False, checkpoint_every=None
    )
    run = FinetuneRun(body, pack, rows, config)
    result = run.train(tmp_path / "ckpt")
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert sum(losses[-3:]) < sum(losses[:3])  # the span heads learn
    task = run.task_module()
    assert task.settings["seq_len"] == 32 and sorted(task.head) == ["qa_outputs.bias", "qa_outputs.weight"]
    task.save_pretrained(tmp_path / "qa")
    scores = evaluate(body, pack, tmp_path / "qa", rows, device="cpu")
    assert set(scores) == {"exact", "f1", "n"} and scores["n"] == len(rows)
    # The composed model answers exactly as the live one.
    assert scores == score_model(run.model, pack.tokenizer, "qa", [], rows, seq_len=32)
