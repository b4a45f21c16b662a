"""Options several commands share (cli/_options.py) reach the library the same way from each command."""

import pytest
from typer.testing import CliRunner

import embswap.train.pretrain
import embswap.train.transfer
from embswap.cli._common import comma_list
from embswap.cli.main import app
from embswap.errors import EmbswapError
from tests.helpers.models import DE_TEXT

runner = CliRunner()

# Every training-loop option, each away from its default, and the config fields they must become.
LOOP = ["--max-steps", "7", "--max-minutes", "2.5", "--seq-len", "24", "--batch-size", "3", "--lr", "0.002"]
LOOP += ["--seed", "5", "--device", "cpu", "--checkpoint-every", "4", "--quiet"]
FIELDS = {
    "max_steps": 7,
    "max_minutes": 2.5,
    "seq_len": 24,
    "batch_size": 3,
    "lr": 0.002,
    "seed": 5,
    "device": "cpu",
    "checkpoint_every": 4,
    "progress": False,
}


class _Stopped(EmbswapError):
    pass


def _stop_at(monkeypatch, module, name: str) -> dict:
    """Replace ``module.name`` (a step's run function) by one that keeps the config it gets and stops."""
    seen: dict = {}

    def run(*args, **kwargs):
        seen["config"] = next(arg for arg in args if type(arg).__name__.endswith("Config"))
        raise _Stopped("stopped before training")

    monkeypatch.setattr(module, name, run)
    return seen


@pytest.fixture
def de_file(tmp_path):
    path = tmp_path / "de.txt"
    path.write_text("\n".join(DE_TEXT) + "\n", encoding="utf-8")
    return path


def test_pretrain_and_transfer_give_their_configs_the_same_loop_options(monkeypatch, tmp_path, bert_store, de_file):
    seen = _stop_at(monkeypatch, embswap.train.pretrain, "run_pretrain")
    args = ["pretrain", "--lang", "de", "--text", de_file, "-o", tmp_path / "new", *LOOP]
    result = runner.invoke(app, [str(a) for a in args])
    assert (result.exit_code, result.output.splitlines()[-1]) == (1, "error: stopped before training")
    assert {name: getattr(seen["config"], name) for name in FIELDS} == FIELDS

    seen = _stop_at(monkeypatch, embswap.train.transfer, "run_transfer")
    args = ["transfer", "--body", bert_store.body_path, "--lang", "de", "--text", de_file, "--vocab-size", "100"]
    result = runner.invoke(app, [str(a) for a in [*args, "-o", tmp_path / "de", *LOOP]])
    assert (result.exit_code, result.output.splitlines()[-1]) == (1, "error: stopped before training")
    assert {name: getattr(seen["config"], name) for name in FIELDS} == FIELDS


@pytest.mark.parametrize(
    "command", [["pretrain", "--lang", "en"], ["transfer", "--body", "body", "--lang", "de"], ["tokenizer", "train"]]
)
def test_every_command_that_trains_on_text_asks_for_text_or_a_dataset(tmp_path, command):
    result = runner.invoke(app, [*command, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "Invalid value for --text: give at least one --text FILE (or --dataset NAME)" in result.output


def test_comma_list_strips_items_and_drops_empty_ones():
    assert comma_list(" de, ,ru,") == ["de", "ru"]
    assert comma_list(",") == []
