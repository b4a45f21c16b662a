"""The checks that keep the tree in shape, run by the README's test command (and so by CI).

ruff (lint rules and formatting), import-linter (the layer contracts) and mypy (the public API) are
configured in pyproject.toml; each test runs the tool as a user would from the repository root.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: `make install` installs it (the test extra)")
    return path


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_ruff_lint_rules_pass():
    done = _run(_tool("ruff"), "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_format_is_applied():
    done = _run(_tool("ruff"), "format", "--check", "--no-cache", ".")
    assert done.returncode == 0, "run `ruff format .`:\n" + done.stdout[-4000:] + done.stderr[-2000:]


def test_import_layers_hold():
    done = _run(_tool("lint-imports"), "--no-cache")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


@pytest.mark.slow
def test_mypy_passes_on_the_public_api():
    done = _run(_tool("mypy"), "--no-incremental", timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
