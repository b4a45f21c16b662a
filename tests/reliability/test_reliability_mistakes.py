"""Three classes of everyday mistakes, each tested as a generated family (tests/helpers/reliability_outputs.py,
which benchmarks/reliability.py runs longer):

- no writer replaces a user's file or folder, another kind of thing, its own input or a path inside one;
- a command whose output pipe closes still finishes and writes a whole artifact;
- every bad command line ends in one `error:` line (exit 1), or that line and a `try:` hint (exit 2).

The examples that found them are in test_reliability_outputs.py and test_reliability_bounds.py.
"""

import pytest

from embswap.errors import OutputPathError
from embswap.interop import export_adapters_embeddings
from embswap.outputs import ADAPTERS, TOKENIZER, check_card, kind_of
from tests.helpers import reliability_kit as kit
from tests.helpers import reliability_outputs as mistakes

# max_examples per family in the default suite (benchmarks/reliability.py runs more, with fresh seeds)
BUDGET = {"output_paths": 120, "closed_pipe": 2, "messages": 80}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return kit.make_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(autouse=True)
def _no_check_cache(monkeypatch):
    monkeypatch.setenv("EMBSWAP_CHECK_CACHE", "off")  # nothing outside the workspace is written


@pytest.mark.parametrize("family", list(BUDGET))
def test_generated_family(samples, family):
    before = kit.STATS[f"{family}:cases"]
    mistakes.FAMILIES[family](samples, BUDGET[family], derandomize=True)
    assert kit.STATS[f"{family}:cases"] - before >= BUDGET[family]


# --- the writers this class added to the guard ------------------------------------------------------


def test_card_write_only_into_an_artifact_or_store_and_over_a_card_only_with_overwrite(samples, tmp_path):
    ws = mistakes.workspace(samples)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes\n")
    for folder, message in [
        (mine, f"{mine} is a folder of other files (it has no body/, packs/ or tasks/), not an artifact or a store"),
        (ws.tok, f"{ws.tok} is a tokenizer folder, not an artifact or a store"),
        (ws.pack / "tokenizer", f"{ws.pack / 'tokenizer'} is inside {ws.pack}, a language pack"),
    ]:
        code, out, err = mistakes.run_cli(["card", folder, "--write"])
        assert (code, out) == (1, "") and err.startswith(f"error: {message}"), err
    assert (mine / "README.md").read_text() == "my notes\n" and not (ws.tok / "README.md").exists()
    pack = tmp_path / "pack"
    import shutil

    shutil.copytree(ws.pack, pack)
    assert mistakes.run_cli(["card", pack, "--write"])[0] == 0
    (pack / "README.md").write_text("edited by hand\n")
    code, _, err = mistakes.run_cli(["card", pack, "--write"])
    assert code == 1 and err == (
        f"error: {pack / 'README.md'} already exists (it may hold your edits); pass --overwrite to replace it "
        "with the generated card\n"
    )
    assert (pack / "README.md").read_text() == "edited by hand\n"
    assert mistakes.run_cli(["card", pack, "--write", "--overwrite"])[0] == 0
    assert (pack / "README.md").read_text().startswith("---\n") and kind_of(pack) == "language_pack"
    assert sorted(p.name for p in pack.iterdir() if p.name.startswith(".")) == []  # no temporary file left
    (pack / "README.md").unlink()
    (pack / "README.md").symlink_to(mine / "README.md")
    with pytest.raises(OutputPathError, match="not an artifact or a store"):  # a link makes it a user's folder
        check_card(pack, replace=True)


def test_adapters_export_replaces_only_an_earlier_export(samples, tmp_path):
    ws = mistakes.workspace(samples)
    out = tmp_path / "emb"
    export_adapters_embeddings(ws.pack, out)
    assert kind_of(out) == ADAPTERS and kind_of(out / "tokenizer") == TOKENIZER
    export_adapters_embeddings(ws.pack, out)  # an earlier export is replaced
    (out / "notes.txt").write_text("mine")
    with pytest.raises(
        OutputPathError, match=r"emb is a folder that is not an adapters embeddings folder \(it holds notes.txt"
    ):
        export_adapters_embeddings(ws.pack, out)
    with pytest.raises(OutputPathError, match="an input of this command"):
        export_adapters_embeddings(ws.pack, ws.pack.parent)  # the folder that holds the pack
    with pytest.raises(OutputPathError, match="is inside .*tok, a tokenizer folder"):
        export_adapters_embeddings(ws.pack, ws.tok / "emb")
    assert (out / "notes.txt").read_text() == "mine" and not (ws.tok / "emb").exists()
