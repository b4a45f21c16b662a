"""`embswap --help` and `import embswap` stay light: torch and the other heavy libraries load in the commands.

Each check runs in a fresh interpreter, since this test process has torch loaded already (conftest).
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer

import embswap.cli
from embswap.cli.main import app

HEAVY = ("torch", "transformers", "matplotlib", "sklearn", "adapters", "accelerate", "datasets", "safetensors.torch")

# Every help page of the app, found from the app itself, so a new command or group is covered without an edit here.
ENUMERATE = """
import typer

from embswap.cli.main import app


def command_paths(command=None, prefix=()):
    command = command or typer.main.get_command(app)
    yield list(prefix)
    for name, sub in sorted(getattr(command, "commands", {}).items()):  # a group's commands by name
        yield from command_paths(sub, (*prefix, name))
"""


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _command_paths() -> list[list[str]]:
    scope: dict = {}
    exec(ENUMERATE, scope)
    return list(scope["command_paths"]())


def test_every_help_page_imports_no_heavy_library():
    found = _run(
        ENUMERATE
        + f"""
import json, sys
from typer.testing import CliRunner

runner = CliRunner()
pages = []
for path in command_paths():
    result = runner.invoke(app, [*path, "--help"])
    pages.append([path, result.exit_code, "Usage:" in result.output])
print(json.dumps({{"pages": pages, "heavy": sorted(set({HEAVY!r}) & set(sys.modules))}}))
"""
    )
    paths = _command_paths()
    assert ["data", "export"] in paths and ["transfer"] in paths and [] in paths  # groups and their commands
    assert found["pages"] == [[path, 0, True] for path in paths]
    assert found["heavy"] == []


def test_import_embswap_is_light_until_a_name_is_used():
    found = _run(
        f"""
import json, sys
import embswap

light = sorted(set({HEAVY!r}) & set(sys.modules))
version = embswap.__version__
listed = sorted(set(embswap.__all__) - set(dir(embswap)))
from embswap import Store
import embswap.compose, embswap.split  # submodules named like the functions they define
print(json.dumps({{
    "light": light, "version": version, "unlisted": listed, "torch_after": "torch" in sys.modules,
    "store": Store.__module__ + "." + Store.__qualname__,
    "compose": embswap.compose is sys.modules["embswap.compose"].compose,
    "split": embswap.split is sys.modules["embswap.split"].split,
}}))
"""
    )
    assert found == {
        "light": [],
        "version": embswap.__version__,
        "unlisted": [],
        "torch_after": True,
        "store": "embswap.store.Store",
        "compose": True,
        "split": True,
    }


def test_unknown_top_level_name_is_an_attribute_error():
    import embswap

    with pytest.raises(AttributeError, match=r"^module 'embswap' has no attribute 'Stores'$"):
        _ = embswap.Stores


def _callback_modules(typer_app: typer.Typer) -> set[str]:
    modules = {info.callback.__module__ for info in typer_app.registered_commands}
    for group in typer_app.registered_groups:
        modules |= _callback_modules(group.typer_instance)
    return modules


def test_every_command_module_is_registered():
    folder = Path(embswap.cli.__file__).parent
    command_modules = {f"embswap.cli.{p.stem}" for p in folder.glob("*.py") if not p.stem.startswith("_")} - {
        "embswap.cli.main"
    }
    assert "embswap.cli.train" in command_modules
    assert _callback_modules(app) == command_modules


def test_a_command_module_that_fails_to_import_stops_the_cli():
    # None in sys.modules makes `import embswap.cli.demo` raise ModuleNotFoundError naming that module,
    # the case a silent skip would have hidden.
    found = _run(
        """
import json, sys
sys.modules["embswap.cli.demo"] = None
try:
    import embswap.cli.main
except ImportError as err:
    print(json.dumps({"error": type(err).__name__, "name": err.name}))
else:
    print(json.dumps({"error": None}))
"""
    )
    assert found == {"error": "ModuleNotFoundError", "name": "embswap.cli.demo"}
