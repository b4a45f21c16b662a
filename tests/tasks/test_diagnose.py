"""The swap diagnostic: token alignment, self-transfer, refusal of seen packs, `embswap diagnose`."""

import dataclasses
import json

import pytest
import torch
from typer.testing import CliRunner

from embswap import Store, split_model
from embswap.artifacts import load_tokenizer
from embswap.cli.main import app
from embswap.diagnose import embedding_fingerprint, frequent_token_ids, self_transfer, token_alignment
from embswap.errors import EmbswapError
from embswap.init import initialize_embeddings
from embswap.train.finetune import FinetuneConfig, FinetuneRun
from tests.helpers.models import EN_TEXT, make_mlm

ROWS = [{"text": t, "label": "light" if "light" in t else "other"} for t in EN_TEXT]
runner = CliRunner()


def _reversed_vocab_pack(pack, folder):
    """The same pack with its non-special ids in reverse order: rows and tokenizer move together."""
    pack.tokenizer.save_pretrained(str(folder))
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    special = set(pack.tokenizer.all_special_ids)
    movable = sorted(i for i in data["model"]["vocab"].values() if i not in special)
    new_id = dict(zip(movable, reversed(movable)))
    data["model"]["vocab"] = {token: new_id.get(i, i) for token, i in data["model"]["vocab"].items()}
    path.write_text(json.dumps(data), encoding="utf-8")
    order = torch.arange(pack.vocab_size)
    for old, new in new_id.items():
        order[new] = old  # new row `new` holds old row `old`
    return dataclasses.replace(
        pack,
        tokenizer=load_tokenizer(folder),
        word_embeddings=pack.word_embeddings[order].clone(),
        output_bias=pack.output_bias[order].clone(),
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Body, 'en' pack, a robust extra pack 'xx' and task 'light' fine-tuned with both, in a store."""
    root = tmp_path_factory.mktemp("diagnose")
    body, en = split_model(*make_mlm("bert"), "en")
    extra = split_model(*make_mlm("bert", seed=2), "en")[1]
    extra.body_fingerprint = body.fingerprint
    store = Store(root / "store")
    store.save_body(body)
    store.save_pack(en)
    config = FinetuneConfig(
        task="classification", max_steps=4, lr=5e-3, batch_size=8, seq_len=32, progress=False, checkpoint_every=None
    )
    run = FinetuneRun(body, en, ROWS, config, extra_packs=[extra])
    run.train(root / "ckpt")
    task = run.task_module()
    store.save_task("light", task)
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    (root / "en.txt").write_text("\n".join(EN_TEXT) + "\n", encoding="utf-8")
    return root, store, body, en, extra, task


def test_identical_packs_align_exactly(setup):
    _, _, _, en, _, _ = setup
    result = token_alignment(en, en)
    n = en.vocab_size - len(en.tokenizer.all_special_ids)
    assert result == {"mean_cosine": 1.0, "finds_itself_percent": 100.0, "matched": n, "candidates": n}


def test_other_vocabulary_order_matches_by_string(setup, tmp_path):
    _, _, _, en, _, _ = setup
    permuted = _reversed_vocab_pack(en, tmp_path)
    assert not torch.equal(permuted.word_embeddings, en.word_embeddings)
    result = token_alignment(en, permuted, top_k=50)
    assert result == {"mean_cosine": 1.0, "finds_itself_percent": 100.0, "matched": 50, "candidates": 50}


def test_negated_rows_give_exact_values(setup):
    _, _, _, en, _, _ = setup
    ids = frequent_token_ids(en.tokenizer, 10_000)
    negated = ids[::4]  # a quarter of the compared tokens point the other way
    matrix = en.word_embeddings.clone()
    matrix[negated] = -matrix[negated]
    flipped = dataclasses.replace(en, word_embeddings=matrix)
    result = token_alignment(en, flipped, top_k=10_000)
    n, k = len(ids), len(negated)
    # cosine +1 for kept rows, -1 for negated ones; a negated token's nearest row is never its own
    assert result == {
        "mean_cosine": round((n - 2 * k) / n, 6),
        "finds_itself_percent": round(100.0 * (n - k) / n, 6),
        "matched": n,
        "candidates": n,
    }


def test_frequency_ranks_tokens_from_text(setup):
    _, _, _, en, _, _ = setup
    light = en.tokenizer.convert_tokens_to_ids("light")
    ids = frequent_token_ids(en.tokenizer, 2, ["light light light", "God light"])
    assert ids == [light, en.tokenizer.convert_tokens_to_ids("God")]
    # Only the two compared rows matter: every other row may change freely.
    matrix = -en.word_embeddings.clone()
    matrix[ids] = en.word_embeddings[ids]
    changed = dataclasses.replace(en, word_embeddings=matrix)
    result = token_alignment(en, changed, top_k=2, frequency_texts=["light light light", "God light"])
    assert result == {"mean_cosine": 1.0, "finds_itself_percent": 100.0, "matched": 2, "candidates": 2}


def test_random_pack_has_low_alignment(setup):
    _, _, body, en, _, _ = setup
    start = initialize_embeddings(body, en.tokenizer, "random", reference_pack=en, seed=7)
    random_pack = dataclasses.replace(en, word_embeddings=start.word_embeddings, output_bias=start.output_bias)
    result = token_alignment(en, random_pack)
    assert abs(result["mean_cosine"]) < 0.2
    assert result["finds_itself_percent"] < 10.0


def test_self_transfer_with_an_equivalent_pack_is_exact(setup, tmp_path):
    root, _, body, en, _, task = setup
    permuted = _reversed_vocab_pack(en, tmp_path)
    result = self_transfer(body, en, task, root / "test.jsonl", permuted)
    assert result["metric"] == "accuracy"
    assert result["self_transfer"] == result["l1"] and result["l1"]["n"] == len(ROWS)
    assert result["ratio"] == 1.0
    assert result["alignment"]["mean_cosine"] == 1.0 and result["alignment"]["finds_itself_percent"] == 100.0


def _without_records(task, **provenance):
    kept = {k: v for k, v in task.provenance.items() if k != "trained_with_packs"}
    return dataclasses.replace(task, provenance={**kept, **provenance})


def test_identical_pack_of_an_unrecorded_task_scores_the_same(setup):
    _, _, body, en, _, task = setup
    result = self_transfer(body, en, _without_records(task), ROWS, en)
    assert result["ratio"] == 1.0 and result["alignment"]["mean_cosine"] == 1.0


def test_fine_tuning_records_and_refuses_its_packs(setup):
    _, _, body, en, extra, task = setup
    recorded = [(e["language"], e["fingerprint"]) for e in task.provenance["trained_with_packs"]]
    assert recorded == [("en", embedding_fingerprint(en)), ("en", embedding_fingerprint(extra))]
    for seen in (en, extra):
        with pytest.raises(EmbswapError, match="that the task was fine-tuned with"):
            self_transfer(body, en, task, ROWS, seen)
    # Tasks written before trained_with_packs existed named their robust packs by a 16-character digest.
    legacy = _without_records(task, robust_packs=[{"language": "en", "digest": embedding_fingerprint(extra)[:16]}])
    with pytest.raises(EmbswapError, match="pack 'en' that the task was fine-tuned with"):
        self_transfer(body, en, legacy, ROWS, extra)


def test_cli_relearns_once_then_reuses(setup):
    root, store, _, _, _, _ = setup
    args = [
        "diagnose",
        "--store",
        str(store.path),
        "--task",
        "light",
        "--data",
        str(root / "test.jsonl"),
        "--text",
        str(root / "en.txt"),
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--json",
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert set(report) == {
        "task",
        "language",
        "relearned",
        "data",
        "metric",
        "l1",
        "self_transfer",
        "ratio",
        "alignment",
    }
    assert (report["task"], report["language"], report["relearned"]) == ("light", "en", "en-relearned")
    assert set(report["alignment"]) == {"mean_cosine", "finds_itself_percent", "matched", "candidates"}
    assert report["ratio"] == report["self_transfer"]["accuracy"] / report["l1"]["accuracy"]
    relearned = store.pack("en-relearned")
    assert relearned.provenance["steps"] == 3 and relearned.provenance["init"]["method"] == "random"

    again = runner.invoke(app, args[:-1])  # the table, from the stored pack
    assert again.exit_code == 0, again.output
    assert "reusing 'en-relearned'" in again.stderr
    assert "tokens finding themselves" in again.stdout and f"{report['l1']['accuracy']:.1f}" in again.stdout


def test_cli_one_line_errors(setup, tmp_path):
    root, store, _, _, _, _ = setup
    base = ["--data", str(root / "test.jsonl")]
    missing = runner.invoke(app, ["diagnose", "--store", str(tmp_path / "nowhere"), "--task", "light", *base])
    assert missing.exit_code == 1 and missing.stderr.count("\n") == 1 and "no store at" in missing.stderr
    unknown = runner.invoke(app, ["diagnose", "--store", str(store.path), "--task", "nope", *base])
    assert unknown.exit_code == 1 and "has no task 'nope' (it has: light)" in unknown.stderr
    seen = runner.invoke(app, ["diagnose", "--store", str(store.path), "--task", "light", "--relearned", "en", *base])
    assert seen.exit_code == 1 and seen.stderr.splitlines()[-1].startswith("error: the re-learned pack")
    no_text = runner.invoke(
        app, ["diagnose", "--store", str(store.path), "--task", "light", "--relearned", "xx", *base]
    )
    assert no_text.exit_code == 1 and "give L1 text to re-learn it" in no_text.stderr
    bad = runner.invoke(app, ["diagnose", "--store", str(store.path), "--task", "light", "--objective", "align", *base])
    assert bad.exit_code == 2


def test_demo_reports_the_alignment(setup, tmp_path, monkeypatch):
    """Demo.evaluate goes through self_transfer; the report prints the diagnostic line (a fake Bible)."""
    from types import SimpleNamespace

    from embswap.demo import monotrans as demo_module
    from embswap.report import demo_markdown

    _, _, body, en, extra, task = setup
    store = Store(tmp_path / "demo" / "store")
    store.save_body(body)
    store.save_pack(en)
    store.save_pack(_reversed_vocab_pack(en, tmp_path), "en-relearned")
    store.save_pack(dataclasses.replace(extra, language="xx"))
    store.save_task("genre", task)
    rows = [{**row, "id": str(i)} for i, row in enumerate(ROWS)]
    fake_bible = SimpleNamespace(genre_examples=lambda lang, split, common=None: rows)
    monkeypatch.setattr(demo_module, "_bible", lambda: fake_bible)
    config = demo_module.DemoConfig(languages=("xx",), eval_examples=len(rows))
    results = demo_module.Demo(tmp_path / "demo", config, log=lambda message: None).evaluate()
    assert results["self_transfer"] == results["english"] and results["self_transfer_ratio"] == 1.0
    assert results["self_transfer_alignment"]["mean_cosine"] == 1.0
    line = "self-transfer: 100 % of English; re-learned English vectors: mean cosine 1.00, 100 % find themselves"
    assert f"\n{line}\n" in demo_markdown(results)
