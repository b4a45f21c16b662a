"""The distribution installs the CLI as embswap.cli, never as a top-level `cli` module."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_maps_cli_into_the_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(tmp_path), "--no-deps", "-q"],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("embswap-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "embswap/cli/main.py" in names
    assert not [n for n in names if n.startswith("cli/")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "embswap = embswap.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
