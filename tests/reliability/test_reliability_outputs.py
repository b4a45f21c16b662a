"""No command destroys what a user has; output to a closed pipe never stops a run or its save.

The first family runs every writing command against every kind of target it must not replace (a
file, a folder of the user's own files, an artifact of another kind, a folder that only claims to
be of the right kind, a path inside an artifact, the command's input, a parent and a child of it, a
link to it) and checks exit code 1, one `error:` line and that every byte under the workspace is
unchanged. The second runs short trainings with stdout and stderr on a pipe nobody reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from embswap import Body, LanguagePack, Store, export, split_model
from embswap.cli.main import app
from embswap.errors import OutputPathError
from embswap.outputs import (
    DEMO,
    EMPTY,
    FILE,
    FOLDER,
    LINK,
    MISSING,
    MODEL,
    STORE,
    TOKENIZER,
    check_output,
    kind_of,
    tolerate_closed,
)
from tests.helpers.models import DE_TEXT, EN_TEXT, make_mlm, make_tokenizer
from tests.helpers.reliability_outputs import tree_digest

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_check_cache(monkeypatch):
    monkeypatch.setenv("EMBSWAP_CHECK_CACHE", "off")  # nothing outside the workspace is written


@dataclass
class Workspace:
    root: Path
    store: Store
    spare: Path  # a language pack no command reads
    tok: Path  # a tokenizer folder
    ckpt: Path  # a transformers masked-LM checkpoint
    text: Path
    rows: Path


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("outputs")
    model, tokenizer = make_mlm("bert")
    body, pack = split_model(model, tokenizer, "en")
    store = Store(root / "store")
    store.save_body(body)
    store.save_pack(pack)
    pack.save_pretrained(root / "spare")
    make_tokenizer("bert").save_pretrained(str(root / "tok"))
    model.save_pretrained(str(root / "ckpt" / "model"))
    tokenizer.save_pretrained(str(root / "ckpt" / "model"))
    (root / "texts").mkdir()
    text = root / "texts" / "de.txt"
    text.write_text("\n".join(DE_TEXT) + "\n", encoding="utf-8")
    rows = root / "texts" / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": t, "label": str(i % 2)}) + "\n" for i, t in enumerate(EN_TEXT)))
    (root / "notes.txt").write_text("a user's notes\n")
    (root / "mine" / "data").mkdir(parents=True)
    (root / "mine" / "thesis.tex").write_text("\\documentclass{article}\n")
    (root / "mine" / "data" / "table.bin").write_bytes(bytes(range(256)))
    return Workspace(root, store, root / "spare", root / "tok", root / "ckpt" / "model", text, rows)


# --- the commands that write, what they read and what they write --------------------------------


@dataclass
class Command:
    name: str
    kind: str  # what it writes (embswap.outputs kinds)
    args: callable  # (ws, out) -> argv
    input: callable = None  # (ws) -> the input the input-related targets are built from
    parent: callable = None
    child: callable = None


COMMANDS = [
    Command(
        "compose",
        MODEL,
        lambda w, o: ["compose", "--body", w.store.body_path, "--pack", w.store.pack_path("en"), "-o", o],
        input=lambda w: w.store.pack_path("en"),
        parent=lambda w: w.store.path,
        child=lambda w: w.store.pack_path("en") / "sub",
    ),
    Command(
        "split",
        STORE,
        lambda w, o: ["split", w.ckpt, "-o", o, "--lang", "en", "--overwrite"],
        input=lambda w: w.ckpt,
        parent=lambda w: w.ckpt.parent,
        child=lambda w: w.ckpt / "sub",
    ),
    Command(
        "transfer",
        "language_pack",
        lambda w, o: [
            "transfer",
            "--body",
            w.store.body_path,
            "--lang",
            "de",
            "--text",
            w.text,
            "--vocab-size",
            "100",
            "-o",
            o,
        ],
        input=lambda w: w.store.body_path,
        parent=lambda w: w.store.path,
        child=lambda w: w.store.body_path / "sub",
    ),
    Command(
        "finetune",
        "task_module",
        lambda w, o: [
            "finetune",
            "--body",
            w.store.body_path,
            "--pack",
            w.store.pack_path("en"),
            "--task",
            "classification",
            "--train",
            w.rows,
            "-o",
            o,
        ],
        input=lambda w: w.store.pack_path("en"),
        parent=lambda w: w.store.path / "packs",
        child=lambda w: w.store.pack_path("en") / "sub",
    ),
    Command(
        "pretrain",
        STORE,
        lambda w, o: ["pretrain", "--lang", "de", "--text", w.text, "--tokenizer", w.tok, "-o", o, "--overwrite"],
        input=lambda w: w.text,
        parent=lambda w: w.text.parent,
        child=lambda w: w.tok / "sub",
    ),
    Command(
        "tokenizer-train",
        TOKENIZER,
        lambda w, o: ["tokenizer", "train", "--text", w.text, "--body", w.store.body_path, "-o", o],
        input=lambda w: w.text,
        parent=lambda w: w.text.parent,
        child=lambda w: w.store.body_path / "sub",
    ),
    Command("data-export", FILE, lambda w, o: ["data", "export", "bible-genre", "--lang", "de", "-o", o]),
    Command("pull", "language_pack", lambda w, o: ["pull", "someone/packs", "-o", o, "--overwrite"]),
    Command("demo", DEMO, lambda w, o: ["demo", "--quick", "-o", o]),
]


def _fake(ws: Workspace, kind: str) -> Path:
    """A folder that claims ``kind`` but also holds a user's file: never ours to replace."""
    folder = ws.root / f"fake-{kind}"
    if folder.exists():
        return folder
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    if kind in ("body", "language_pack", "task_module"):
        (folder / "config.json").write_text(json.dumps({"kind": kind, "schema_version": 1, "files": {}}))
    elif kind == MODEL:
        (folder / "config.json").write_text(json.dumps({"model_type": "bert", "embswap_export": {"files": []}}))
    elif kind == TOKENIZER:
        (folder / "tokenizer_config.json").write_text("{}")
    elif kind == STORE:
        (folder / "body").mkdir()
    elif kind == DEMO:
        (folder / "demo_config.json").write_text("{}")
    return folder


def _link(ws: Workspace, name: str, to: Path) -> Path:
    link = ws.root / f"link-{name}"
    if not link.is_symlink():
        link.symlink_to(to)
    return link


TARGETS = {
    "plain-file": lambda c, w: w.root / "notes.txt",
    "user-folder": lambda c, w: w.root / "mine",
    "other-kind": lambda c, w: w.tok if c.kind == "language_pack" else w.spare,
    "claims-its-kind": lambda c, w: _fake(w, c.kind),
    "inside-an-artifact": lambda c, w: w.spare / ("sub.jsonl" if c.kind == FILE else "sub"),
    "link-to-user-folder": lambda c, w: _link(w, "mine", w.root / "mine"),
    "the-input": lambda c, w: c.input(w),
    "parent-of-input": lambda c, w: c.parent(w),
    "child-of-input": lambda c, w: c.child(w),
    "link-to-input": lambda c, w: _link(w, c.name, c.input(w)),
}
CASES = [
    (command, target)
    for command in COMMANDS
    for target in TARGETS
    if not (command.input is None and target in ("the-input", "parent-of-input", "child-of-input", "link-to-input"))
    and not (
        command.kind == FILE and target in ("plain-file", "claims-its-kind")
    )  # a file is replaced with --overwrite
]


def _refused(ws: Workspace, argv: list) -> str:
    before = tree_digest(ws.root)
    result = runner.invoke(app, [str(a) for a in argv])
    assert tree_digest(ws.root) == before
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(("command", "target"), CASES, ids=[f"{c.name}-{t}" for c, t in CASES])
def test_no_command_replaces_what_it_must_not(ws, command, target):
    out = TARGETS[target](command, ws)
    line = _refused(ws, command.args(ws, out))
    assert str(out) in line or str(out.parent) in line
    assert "--overwrite" not in line  # overwriting is never what these targets need


@pytest.mark.parametrize("out", ["store", "store/body", "store/packs", "store/packs/en/x", "store/tasks/new"])
def test_compose_from_a_store_never_writes_into_it(ws, out):
    line = _refused(ws, ["compose", "--store", ws.store.path, "--lang", "en", "-o", ws.root / out])
    assert "an input of this command" in line or "inside" in line


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (lambda w: ["split", w.ckpt, "-o", w.store.path, "--lang", "en"], "body"),
        (lambda w: ["pretrain", "--lang", "de", "--text", w.text, "-o", w.store.path], "body"),
        (lambda w: ["data", "export", "bible-genre", "--lang", "de", "-o", w.root / "notes.txt"], "file"),
        (lambda w: ["pull", "someone/packs", "-o", w.spare], "language pack"),
    ],
    ids=["split", "pretrain", "data-export", "pull"],
)
def test_an_artifact_of_the_right_kind_needs_overwrite(ws, argv, names):
    line = _refused(ws, argv(ws))
    assert "--overwrite" in line and names in line


# --- what the guard recognises ---------------------------------------------------------------------


def test_kinds_are_recognised_by_content(ws, tmp_path):
    export(ws.store.body_path, ws.store.pack_path("en"), None, tmp_path / "model")
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(ws.spare)
    found = {
        name: kind_of(path)
        for name, path in {
            "body": ws.store.body_path,
            "pack": ws.spare,
            "store": ws.store.path,
            "model": tmp_path / "model",
            "tok": ws.tok,
            "ckpt": ws.ckpt,
            "file": ws.text,
            "mine": ws.root / "mine",
            "missing": tmp_path / "nope",
            "empty": tmp_path / "empty",
            "link": tmp_path / "link",
            "fake": _fake(ws, "language_pack"),
        }.items()
    }
    assert found == {
        "body": "body",
        "pack": "language_pack",
        "store": STORE,
        "model": MODEL,
        "tok": TOKENIZER,
        "ckpt": FOLDER,
        "file": FILE,
        "mine": FOLDER,
        "missing": MISSING,
        "empty": EMPTY,
        "link": LINK,
        "fake": FOLDER,
    }


def test_a_library_save_never_replaces_other_files(ws, tmp_path):
    pack = LanguagePack.from_pretrained(ws.spare)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    with pytest.raises(OutputPathError, match="not a language pack"):
        pack.save_pretrained(victim)  # the check under the save lock, before the swap
    with pytest.raises(OutputPathError, match="is a language pack, not a body"):
        Body.from_pretrained(ws.store.body_path).save_pretrained(ws.spare)
    assert (victim / "keep.txt").read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["victim"]
    assert kind_of(ws.spare) == "language_pack"


_PATHS = [
    "config.json",
    "notes.txt",
    "embeddings.safetensors",
    "tokenizer/tokenizer.json",
    "README.md",
    "tokenizer.json",
    "tokenizer_config.json",
    "demo_config.json",
    "body/config.json",
    "packs/en/x.bin",
    ".embswap-tmp-x",
    "sub/data.bin",
]
_CONFIGS = st.builds(
    lambda kind, files: json.dumps({"kind": kind, "schema_version": 1, "files": {f: "0" * 64 for f in files}}),
    st.sampled_from(["language_pack", "body", "task_module", "store", None]),
    st.lists(st.sampled_from(_PATHS), max_size=4),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.dictionaries(st.sampled_from(_PATHS), st.one_of(_CONFIGS, st.binary(max_size=8)), max_size=5))
def test_a_save_replaces_only_what_it_may(ws, tmp_path, entries):
    """Whatever a folder holds, saving a pack there replaces it only when it is empty or a pack; else nothing changes."""
    target = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
    target.mkdir()
    for rel, content in entries.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(content if isinstance(content, bytes) else content.encode())
    found, before = kind_of(target), tree_digest(target)
    event(found)
    pack = LanguagePack.from_pretrained(ws.spare)
    if found in (EMPTY, "language_pack"):
        pack.save_pretrained(target)
        assert kind_of(target) == "language_pack"
    else:
        with pytest.raises(OutputPathError):
            pack.save_pretrained(target)
        assert tree_digest(target) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".embswap-")] == []


def test_allowed_replacements_still_work(ws, tmp_path):
    out = tmp_path / "genre.jsonl"
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(
            app, ["data", "export", "bible-genre", "--lang", "de", "--split", "test", "-o", str(out), *extra]
        )
        assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["genre.jsonl"]  # no temporary file left
    model = tmp_path / "model"
    for _ in range(2):  # a composed model folder is replaced by the next compose
        result = runner.invoke(
            app, ["compose", "--body", str(ws.store.body_path), "--pack", str(ws.spare), "-o", str(model)]
        )
        assert result.exit_code == 0, result.output
    assert kind_of(model) == MODEL
    with pytest.raises(OutputPathError, match="already holds a file; pass --overwrite"):
        check_output(out, FILE, replace=False, flag="--overwrite")


# --- output to a closed pipe ---------------------------------------------------------------------


def test_a_closed_pipe_drops_output():
    read, write = os.pipe()
    os.close(read)
    stream = tolerate_closed(os.fdopen(write, "w"))
    assert stream.write("x" * 100) == 100 and stream.write("more") == 4
    stream.flush()
    assert tolerate_closed(stream) is stream
    stream.close()


def _start_with_closed_output(args: list, cwd: Path) -> subprocess.Popen:
    """Start the CLI with stdout and stderr on a pipe whose reader is gone before the first write."""
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBSWAP_CHECK_CACHE": "off"}
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "embswap.cli.main", *map(str, args)], stdout=write, stderr=write, cwd=cwd, env=env
        )
    finally:
        os.close(write)


def test_pretraining_survives_a_closed_pipe(ws, tmp_path):
    store = tmp_path / "store"
    run = _start_with_closed_output(
        [
            "pretrain",
            "--lang",
            "de",
            "--preset",
            "tiny",
            "--max-steps",
            "3",
            "--tokenizer",
            ws.tok,
            "--text",
            ws.text,
            "--seq-len",
            "16",
            "--batch-size",
            "2",
            "--threads",
            "1",
            "-o",
            store,
        ],
        tmp_path,
    )  # progress bar on: the first write already fails
    assert run.wait(timeout=300) == 0
    assert Body.from_pretrained(store / "body").provenance["steps"] == 3
    assert LanguagePack.from_pretrained(store / "packs" / "de").language == "de"


def test_transfer_survives_a_closed_pipe(ws, tmp_path, monkeypatch):
    from embswap.cli.main import main

    read, write = os.pipe()
    os.close(read)
    closed = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stdout", closed)
    monkeypatch.setattr(sys, "stderr", closed)
    pack = tmp_path / "de"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "embswap",
            "transfer",
            "--body",
            str(ws.store.body_path),
            "--lang",
            "de",
            "--tokenizer",
            str(ws.tok),
            "--text",
            str(ws.text),
            "--max-steps",
            "2",
            "--seq-len",
            "16",
            "--batch-size",
            "2",
            "-o",
            str(pack),
            "--json",
        ],
    )
    with pytest.raises(SystemExit) as ended:
        main()
    closed.close()
    assert ended.value.code == 0
    assert LanguagePack.from_pretrained(pack).provenance["steps"] == 2
