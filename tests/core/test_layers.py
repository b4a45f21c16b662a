"""Where each idea lives: the layer contract covers every module, encoding pulls in no training code, and the
rules the CLI applies (reference pack, robust-pack store, choice lists) are the library's."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib

from embswap import Store
from embswap.choices import OBJECTIVES
from embswap.layout import artifact_folders

ROOT = Path(__file__).resolve().parents[2]


def _fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (this one has loaded everything); it prints one JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_encoding_a_sentence_imports_no_training_code():
    found = _fresh("""
        import json, sys
        from embswap.tasks.sentence import encode
        from embswap.compose import export
        print(json.dumps(sorted(m for m in sys.modules if m == "embswap.train" or m.startswith("embswap.train."))))
    """)
    assert found == []


def test_every_module_sits_in_a_layer():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    named = {name.strip() for layer in contract["layers"] for name in layer.replace(":", "|").split("|")}
    modules = {f"embswap.{p.stem}" for p in (ROOT / "embswap").glob("*.py") if p.stem != "__init__"}
    modules |= {f"embswap.{p.parent.name}" for p in (ROOT / "embswap").glob("*/__init__.py")}
    assert sorted(modules - named) == []
    assert sorted(named - modules - {"cli"}) == []


def test_objective_registry_holds_the_built_in_names():
    found = _fresh("""
        import json
        import embswap.train.transfer
        from embswap.train.objectives import objective_names
        print(json.dumps(objective_names()))
    """)
    assert found == sorted(OBJECTIVES) == ["align", "mlm"]


def _artifact(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    return folder


def test_store_and_hub_list_with_one_function(tmp_path):
    root = tmp_path / "store"
    _artifact(root / "body")
    _artifact(root / "packs" / "en")
    _artifact(root / "packs" / "de")
    _artifact(root / "packs" / ".old-en")  # a hidden leftover: no name reaches it
    (root / "packs" / "fr").mkdir()  # no config: not an artifact
    _artifact(root / "tasks" / "genre")
    assert Store(root).languages == ["de", "en"]
    assert Store(root).task_names == ["genre"]
    assert [p.relative_to(root).as_posix() for p in artifact_folders(root)] == [
        "body",
        "packs/.old-en",
        "packs/de",
        "packs/en",
        "tasks/genre",
    ]
    assert [p.relative_to(root).as_posix() for p in artifact_folders(root, named_only=True)] == [
        "body",
        "packs/de",
        "packs/en",
        "tasks/genre",
    ]
    assert artifact_folders(root / "packs" / "de") == [root / "packs" / "de"]


def test_one_reference_pack_rule(tmp_path):
    root = tmp_path / "store"
    _artifact(root / "packs" / "en")
    store = Store(root)
    assert store.reference_language("de") == "en"  # the only other pack
    assert store.reference_language("en") is None  # no other pack
    _artifact(root / "packs" / "ru")
    assert store.reference_language("de") is None  # two candidates: nothing decides
    assert store.reference_language("de", recorded="ru") == "ru"  # the pack's recorded reference
    assert store.reference_language("de", recorded="hi") is None  # recorded, but not in this store
    assert store.reference_language("de", exclude={"ru"}) == "en"  # e.g. the folder being written


def test_the_store_a_body_lies_in_keeps_the_robust_packs(tmp_path):
    from embswap.train.robust import robust_store

    body = tmp_path / "store" / "body"
    body.mkdir(parents=True)
    loose = tmp_path / "loose"
    loose.mkdir()
    assert Store.of_body(body).path == tmp_path / "store"
    assert Store.of_body(loose) is None
    assert Store.of_body("user/body") is None  # a Hub id, not a folder
    assert robust_store(body).path == tmp_path / "store"
    assert robust_store(loose) is None
    assert robust_store(loose, tmp_path / "other").path == tmp_path / "other"


def test_cli_choice_lists_are_the_library_names():
    from embswap.choices import FINETUNE_MODES
    from embswap.cli import finetune as cli_finetune
    from embswap.tasks.data import SUPERVISED_TASKS
    from embswap.train.finetune import MODES

    assert cli_finetune.TASK_CHOICES is SUPERVISED_TASKS
    assert cli_finetune.MODE_CHOICES is FINETUNE_MODES is MODES
