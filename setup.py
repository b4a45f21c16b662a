"""Package discovery: every package under embswap/, plus cli/ installed as embswap.cli.

The rest of the metadata is in pyproject.toml. cli/ sits at the top of the repository (the project's
layout) but must not install as a top-level `cli` module, so it is mapped into the package here;
`find_packages` finds every other package, so a new folder needs no edit (tests/core/test_packaging.py).
"""

from setuptools import find_packages, setup

CLI = ["embswap.cli", *(f"embswap.cli.{name}" for name in find_packages("cli"))]

setup(
    packages=find_packages(include=["embswap", "embswap.*"]) + CLI,
    package_dir={"embswap.cli": "cli"},
)
