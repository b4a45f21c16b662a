"""The README's examples run as written (blocks marked with a readme-test comment)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\n```\w+\n(.*?)```", re.S)


def _blocks(kind):
    return [code for lang, code in BLOCK.findall(README.read_text(encoding="utf-8")) if lang == kind]


@pytest.mark.parametrize("code", _blocks("python"))
def test_python_examples(code, tmp_path):
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("code", _blocks("bash"))
def test_cli_examples(code, tmp_path):
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env={**__import__("os").environ, "TMP": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]


def test_readme_has_examples():
    assert _blocks("python") and _blocks("bash")
