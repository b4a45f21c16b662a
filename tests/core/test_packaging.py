"""The distribution installs the CLI as embswap.cli, never as a top-level `cli` module."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_maps_cli_into_the_package(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(tmp_path), "--no-deps", "-q"],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("embswap-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "embswap/cli/main.py" in names
    assert not [n for n in names if n.startswith("cli/")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "embswap = embswap.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    # Every module of every package folder, cli/ under embswap/cli/: setup.py finds them, no list to keep.
    assert sorted(n for n in names if n.endswith(".py")) == _source_modules()


def _source_modules() -> list[str]:
    """The wheel path of every module under embswap/ and cli/ (cli/x.py installs as embswap/cli/x.py)."""
    found = [p.relative_to(ROOT).as_posix() for p in (ROOT / "embswap").rglob("*.py")]
    found += ["embswap/cli/" + p.relative_to(ROOT / "cli").as_posix() for p in (ROOT / "cli").rglob("*.py")]
    return sorted(found)


def test_every_source_folder_is_a_package():
    """find_packages skips a folder without __init__.py, and the wheel would silently lack its modules."""
    folders = {p.parent for root in ("embswap", "cli") for p in (ROOT / root).rglob("*.py")}
    assert sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file()) == []
