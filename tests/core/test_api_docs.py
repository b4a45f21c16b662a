"""The API reference builds offline and names every public object."""

import importlib.util
import inspect
from pathlib import Path

import embswap

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("gen_api_docs", ROOT / "scripts" / "gen_api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _public_names(script) -> list[str]:
    names = [f"`{name}" for name in embswap.__all__]
    for module_name in script.EXTRA_MODULES:
        module = importlib.import_module(module_name)
        names += [f"`{module_name}.{name}(" for name, _ in script._module_functions(module)]
    return names


def test_script_writes_every_public_name(tmp_path):
    script = _script()
    out = tmp_path / "api.md"
    assert script.main(["--output", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    missing = [name for name in _public_names(script) if name not in text]
    assert not missing
    for name in embswap.__all__:  # every class and function comes with its docstring
        obj = getattr(embswap, name)
        if inspect.getdoc(obj) and (inspect.isclass(obj) or inspect.isfunction(obj)):
            assert inspect.getdoc(obj).splitlines()[0] in text, name
    assert script.main(["--output", str(out), "--check"]) == 0
    out.write_text(text + "stale\n", encoding="utf-8")
    assert script.main(["--output", str(out), "--check"]) == 1


def test_committed_reference_names_every_public_name():
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [name for name in _public_names(_script()) if name not in text]
    assert not missing, f"docs/api.md lacks {missing}: run python scripts/gen_api_docs.py"
