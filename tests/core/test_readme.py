"""The README's examples run as written (blocks marked with a readme-test comment), and the relative
links of README.md, SECURITY.md and docs/*.md point at files and headings that exist."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\n```\w+\n(.*?)```", re.S)


def _blocks(kind):
    return [code for lang, code in BLOCK.findall(README.read_text(encoding="utf-8")) if lang == kind]


@pytest.mark.parametrize("code", _blocks("python"))
def test_python_examples(code, tmp_path):
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


def _env_of_this_python(tmp_path) -> dict:
    """The shell a user of this environment has: its `python` and `embswap` first on PATH (as after
    activating the virtual environment the tests run in)."""
    env = dict(os.environ, TMP=str(tmp_path))
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env


@pytest.mark.parametrize("code", _blocks("bash"))
def test_cli_examples(code, tmp_path):
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env_of_this_python(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_readme_has_examples():
    assert _blocks("python") and _blocks("bash")


FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path):
    """GitHub's heading slugs: lower case, punctuation dropped, spaces to hyphens."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.*)$", text, re.M)}


def _broken_links(path):
    broken = []
    for target in LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists() or (anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved)):
            broken.append(f"{path.relative_to(ROOT)}: {target}")
    return broken


def test_relative_links_resolve():
    pages = [README, ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert [b for page in pages for b in _broken_links(page)] == []


def test_readme_stays_a_guide():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250
