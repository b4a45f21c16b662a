"""Generated families for three classes of everyday mistakes, shared by
``tests/reliability/test_reliability_mistakes.py`` and ``benchmarks/reliability.py``:

- ``output_paths``: every writing entry point (library saves, exports, pull, the CLI's writers, ``card
  --write``) against every kind of existing target it must not replace (a user's file or folder, an
  artifact of another kind, a folder that only claims the kind, the command's own input, a path inside
  an input or an artifact, a parent of an input, a link to any of these): refused with an EmbswapError
  and every byte under the workspace unchanged; an artifact of the kind written is replaced only with
  the overwrite option where the entry point has one.
- ``closed_pipe``: short CLI runs that print progress and write an artifact, their stdout and stderr on
  a pipe that closes before or while they write: exit 0 and an artifact that verifies.
- ``messages``: bad inputs to every command (missing paths, wrong kinds, unknown names, bad values,
  usage errors, control characters): exit 1 with one ``error:`` line, or exit 2 with that line and a
  ``try:`` hint; no traceback, no box, nothing unprintable. Bad values and choices (counts out of range,
  unknown families or objectives, a bad ``--device``) are found before any work: nothing is printed before
  the error. ``inspect`` shows hostile config text escaped.

Each case is counted per family in ``reliability_kit.STATS``.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from embswap import Body, LanguagePack, Store, TaskModule, export
from embswap.errors import EmbswapError
from embswap.names import is_valid_name
from embswap.outputs import ADAPTERS, ARTIFACT_KINDS, FILE, MODEL, STORE, TOKENIZER, kind_of
from embswap.verify import verify
from tests.helpers import reliability_kit as kit
from tests.helpers.models import DE_TEXT, EN_TEXT, make_mlm

CARD = "card"  # what `card --write` writes: README.md into an artifact or a store
runner = CliRunner()


def _settings(max_examples: int, derandomize: bool):
    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=derandomize,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under ``root``: file bytes, link targets and folders, by relative path."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                seen[rel] = "link:" + os.readlink(path)
            elif path.is_dir():
                seen[rel] = "dir"
            else:
                seen[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


# --- the workspace: one of every kind of thing a user has -------------------------------------------


@dataclass
class Workspace:
    root: Path
    store: Path  # body, packs en + de, tasks genre
    body: Path
    pack: Path
    task: Path
    model: Path  # a composed model folder
    tok: Path  # a tokenizer folder
    ckpt: Path  # a transformers masked-LM checkpoint (split's input)
    adapters: Path  # an adapters embeddings export
    jsonl: Path  # a data export
    text: Path
    rows: Path
    case: Path  # per-case scratch, removed after each case
    loaded: dict = field(default_factory=dict)

    def kinds(self) -> dict[str, Path]:
        return {"body": self.body, "language_pack": self.pack, "task_module": self.task, MODEL: self.model,
                TOKENIZER: self.tok, STORE: self.store, ADAPTERS: self.adapters, FILE: self.jsonl}  # fmt: skip


def workspace(samples: kit.Samples) -> Workspace:
    """Built once per samples: copies of the sample artifacts beside a composed model, a tokenizer, a
    checkpoint, an adapters export, a data file and texts."""
    cached = getattr(samples, "_mistakes_workspace", None)
    if cached is not None:
        return cached
    from embswap.data.bible import export_jsonl
    from embswap.interop import export_adapters_embeddings

    root = samples.root / "mistakes"
    root.mkdir()
    for name in ("store", "body", "pack", "task"):
        shutil.copytree(getattr(samples, name), root / name)
    pack = LanguagePack.from_pretrained(root / "pack")
    export(root / "body", root / "pack", None, root / "model")
    pack.tokenizer.save_pretrained(str(root / "tok"))
    model, tokenizer = make_mlm("bert")
    model.save_pretrained(str(root / "ckpt"))
    tokenizer.save_pretrained(str(root / "ckpt"))
    export_adapters_embeddings(pack, root / "adapters")
    export_jsonl(EN_TEXT[:4], root / "rows-export.jsonl")
    (root / "texts").mkdir()
    text = root / "texts" / "de.txt"
    text.write_text("\n".join(DE_TEXT) + "\n", encoding="utf-8")
    rows = root / "texts" / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": t, "label": "ab"[i % 2]}) + "\n" for i, t in enumerate(EN_TEXT)))
    ws = Workspace(root, root / "store", root / "body", root / "pack", root / "task", root / "model", root / "tok",
                   root / "ckpt", root / "adapters", root / "rows-export.jsonl", text, rows, root / "case")  # fmt: skip
    ws.loaded = {
        "body": Body.from_pretrained(ws.body),
        "language_pack": pack,
        "task_module": TaskModule.from_pretrained(ws.task),
    }
    assert {kind: kind_of(path) for kind, path in ws.kinds().items()} == {kind: kind for kind in ws.kinds()}
    samples._mistakes_workspace = ws
    return ws


class CommandFailed(EmbswapError):
    """A CLI run that ended with exit code 1 and one ``error:`` line (the message is that line)."""


def run_cli(argv: list, seconds: float = 60.0) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``embswap ARGV`` through the real entry point (usage errors included),
    stopped after ``seconds``."""
    from embswap.cli.main import main

    with runner.isolation() as (out, err, *_), mock.patch.object(sys, "argv", ["embswap", *map(str, argv)]):
        try:
            with kit.time_bound(seconds):
                main()
            code = 0
        except SystemExit as ended:
            code = ended.code if isinstance(ended.code, int) else (0 if ended.code is None else 1)
        # The CLI turns any exception into one line, the time bound's too: that must not pass for a refusal.
        assert kit.CaseTimeout.__name__ not in err.getvalue().decode(), (argv, f"ran past {seconds} s")
        return code, out.getvalue().decode(), err.getvalue().decode()


def _invoke(argv: list) -> None:
    """Run a writing command: return on exit 0, raise CommandFailed on exit 1 with one error line."""
    code, out, err = run_cli(argv)
    lines = err.strip().splitlines()
    if code == 0:
        return
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), (argv, code, out, err)
    raise CommandFailed(lines[0].removeprefix("error: "))


# --- class 1: output paths ---------------------------------------------------------------------------


def _transfer(ws: Workspace, target: Path, overwrite: bool) -> None:
    from embswap.train.transfer import run_transfer
    from embswap.train.transfer_config import TransferConfig

    config = TransferConfig(language="de", init="random", max_steps=1, seq_len=16, batch_size=2)
    run_transfer(ws.store / "body", ws.loaded["language_pack"].tokenizer, DE_TEXT, config, output=target)


def _finetune(ws: Workspace, target: Path, overwrite: bool) -> None:
    from embswap.train.finetune import finetune

    rows = [{"text": t, "label": "ab"[i % 2]} for i, t in enumerate(EN_TEXT)]
    finetune(ws.store / "body", ws.store / "packs" / "de", "classification", rows, output=target, max_steps=1,
             batch_size=2, seq_len=16, progress=False)  # fmt: skip


def _pretrain(ws: Workspace, target: Path, overwrite: bool) -> None:
    from embswap.train.pretrain import pretrain
    from embswap.train.pretrain_config import PretrainConfig

    config = PretrainConfig(max_steps=1, seq_len=16, batch_size=2, vocab_size=120)
    pretrain({"de": DE_TEXT}, target, config, tokenizer=ws.loaded["language_pack"].tokenizer, overwrite=overwrite)


def _pull(ws: Workspace, target: Path, overwrite: bool) -> None:
    from embswap import hub

    # The "Hub" is a local snapshot holding the workspace's pack: no network, the real copy and checks.
    with mock.patch.object(hub, "_snapshot", lambda repo, revision, subfolder, location: ws.pack):
        hub.pull("someone/packs", target, overwrite=overwrite)


def _adapters(ws: Workspace, target: Path, overwrite: bool) -> None:
    from embswap.interop import export_adapters_embeddings

    export_adapters_embeddings(ws.pack, target)


def _export_jsonl(ws: Workspace, target: Path, overwrite: bool) -> None:
    from embswap.data.bible import export_jsonl

    export_jsonl(EN_TEXT[:2], target, overwrite=overwrite)


@dataclass(frozen=True)
class Writer:
    name: str
    kind: str  # what it writes (an embswap.outputs kind, or CARD)
    write: Callable[[Workspace, Path, bool], None]  # (workspace, target, overwrite)
    inputs: Callable[[Workspace], tuple] = lambda w: ()  # the paths it reads, the first the main one
    flag: str | None = None  # the option that allows replacing its kind; None: replaced as a matter of course
    replaces: bool = True  # run the allowed replacement (False for trainings: the refusals are the point)


WRITERS = [
    Writer("LanguagePack.save_pretrained", "language_pack", lambda w, t, o: w.loaded["language_pack"].save_pretrained(t)),
    Writer("Body.save_pretrained", "body", lambda w, t, o: w.loaded["body"].save_pretrained(t)),
    Writer("TaskModule.save_pretrained", "task_module", lambda w, t, o: w.loaded["task_module"].save_pretrained(t)),
    Writer("Store.save_pack", STORE, lambda w, t, o: Store(t).save_pack(w.loaded["language_pack"])),
    Writer("Store.save_task", STORE, lambda w, t, o: Store(t).save_task("genre", w.loaded["task_module"])),
    Writer("export", MODEL, lambda w, t, o: export(w.store / "body", w.store / "packs" / "en", None, t),
           inputs=lambda w: (w.store / "packs" / "en", w.store / "body")),
    Writer("export_adapters_embeddings", ADAPTERS, _adapters, inputs=lambda w: (w.pack,)),
    Writer("export_jsonl", FILE, _export_jsonl, flag="overwrite=True"),
    Writer("hub.pull", "language_pack", _pull, flag="overwrite=True"),
    Writer("run_transfer", "language_pack", _transfer, inputs=lambda w: (w.store / "body",), replaces=False),
    Writer("finetune", "task_module", _finetune, inputs=lambda w: (w.store / "packs" / "de", w.store / "body"),
           replaces=False),
    Writer("pretrain", STORE, _pretrain, flag="overwrite=True", replaces=False),
    Writer("cli compose", MODEL, lambda w, t, o: _invoke(["compose", "--store", w.store, "--lang", "en", "-o", t]),
           inputs=lambda w: (w.store,)),
    Writer("cli split", STORE, lambda w, t, o: _invoke(["split", w.ckpt, "-o", t, "--lang", "en", *["--overwrite"] * o]),
           inputs=lambda w: (w.ckpt,), flag="--overwrite"),
    Writer("cli tokenizer train", TOKENIZER,
           lambda w, t, o: _invoke(["tokenizer", "train", "--text", w.text, "--body", w.store / "body",
                                    "--vocab-size", "120", "-o", t]),
           inputs=lambda w: (w.text, w.store / "body")),
    Writer("cli data export", FILE,
           lambda w, t, o: _invoke(["data", "export", "bible-genre", "--lang", "de", "--split", "test", "-o", t,
                                    *["--overwrite"] * o]),
           flag="--overwrite"),
    Writer("cli card --write", CARD, lambda w, t, o: _invoke(["card", t, "--write", *["--overwrite"] * o]),
           flag="--overwrite"),
]  # fmt: skip

# A user's own names and contents: plain, look-alikes of embswap's files, hidden ones, nested ones.
_USER_NAMES = st.sampled_from(["notes.txt", "thesis.tex", "data.bin", "README.md", "config.json", "tokenizer.json",
                               "embedding.pt", "body", "packs", "demo_config.json", ".git", "model.safetensors",
                               "x y.txt", "été.csv", "a"])  # fmt: skip
_CONTENTS = st.binary(max_size=64) | st.sampled_from([b"{}", b'{"kind": "language_pack", "files": {}}', b""])


def _user_tree(draw, folder: Path) -> None:
    """A folder of a user's files (at least one of them plainly the user's own)."""
    folder.mkdir(parents=True)
    (folder / draw(st.sampled_from(["notes.txt", "thesis.tex", "photo.jpg"]), label="own file")).write_bytes(
        draw(_CONTENTS, label="own bytes")
    )
    for name in draw(st.lists(_USER_NAMES, max_size=3, unique=True), label="look-alikes"):
        path = folder / name
        if not path.exists():
            if draw(st.booleans(), label="nested"):
                path.mkdir()
                (path / "inner.bin").write_bytes(draw(_CONTENTS))
            else:
                path.write_bytes(draw(_CONTENTS))


def _claims(ws: Workspace, writer: Writer, folder: Path, draw) -> None:
    """A copy of something of the writer's kind with one of the user's files added: not ours to replace."""
    kind = writer.kind if writer.kind != CARD else draw(st.sampled_from([*ARTIFACT_KINDS, STORE]), label="card kind")
    source = ws.kinds()[kind]
    if kind == FILE:  # a file cannot hold another: a folder named like the export instead
        _user_tree(draw, folder)
        return
    shutil.copytree(source, folder, symlinks=True)
    # In an artifact, anywhere; in a store, beside body/ packs/ tasks/ (inside them are artifacts a store
    # writer may replace one by one, or leaves alone).
    inner = folder / draw(st.sampled_from(["", "tokenizer"]), label="where") if kind != STORE else folder
    inner = inner if inner.is_dir() else folder
    (inner / draw(st.sampled_from(["notes.txt", "keep.me", "vocab.bak"]), label="name")).write_bytes(draw(_CONTENTS))


TARGETS = ["user-file", "user-folder", "other-kind", "claims-its-kind", "inside-an-artifact", "own-input",
           "inside-an-input", "parent-of-an-input"]  # fmt: skip


def _target(ws: Workspace, writer: Writer, how: str, draw) -> Path:
    case = ws.case
    inputs = writer.inputs(ws)
    if how == "user-file":
        path = case / draw(st.sampled_from(["notes.txt", "out", "model", "rows.jsonl"]), label="file name")
        path.write_bytes(draw(_CONTENTS, label="file bytes"))
        return path
    if how == "user-folder":
        _user_tree(draw, case / "mine")
        return case / "mine"
    if how == "other-kind":
        allowed = {writer.kind} if writer.kind != CARD else {*ARTIFACT_KINDS, STORE}
        kind = draw(st.sampled_from(sorted(k for k in ws.kinds() if k not in allowed)), label="other kind")
        return ws.kinds()[kind]
    if how == "claims-its-kind":
        _claims(ws, writer, case / "claims", draw)
        return case / "claims"
    if how == "inside-an-artifact":
        kind = draw(st.sampled_from(sorted(k for k in ws.kinds() if k not in (STORE, FILE))), label="artifact")
        return ws.kinds()[kind] / draw(st.sampled_from(["sub", "tokenizer", "new/deeper"]), label="inside")
    if how == "own-input":
        return draw(st.sampled_from(inputs), label="input")
    if how == "inside-an-input":
        source = draw(st.sampled_from(inputs), label="input")
        return source / draw(st.sampled_from(["sub", "tokenizer", "body", "packs/en"]), label="inside")
    if how == "parent-of-an-input":
        source = draw(st.sampled_from(inputs), label="input")
        parents = [p for p in source.parents if p == ws.root or ws.root in p.parents]
        return draw(st.sampled_from(parents), label="parent")
    raise ValueError(how)


def _same_kind(ws: Workspace, writer: Writer, draw) -> Path:
    """A copy of something of the kind the writer writes (for a card: an artifact or store with a README.md)."""
    kind = writer.kind if writer.kind != CARD else draw(st.sampled_from([*ARTIFACT_KINDS, STORE]), label="card kind")
    target = ws.case / "same"
    if kind == FILE:
        shutil.copyfile(ws.jsonl, target)
    else:
        shutil.copytree(ws.kinds()[kind], target, symlinks=True)
    if writer.kind == CARD:
        (target / "README.md").write_text("my own words about this artifact\n")
    return target


def fuzz_output_paths(samples: kit.Samples, max_examples: int, *, derandomize: bool) -> None:
    """Every writer x every target it must not replace (or a link to one): refused, nothing changed; and
    the writer's own kind: replaced only with its overwrite option."""
    ws = workspace(samples)

    @_settings(max_examples, derandomize)
    @given(writer=st.sampled_from(WRITERS), data=st.data())
    def case(writer, data):
        shutil.rmtree(ws.case, ignore_errors=True)
        ws.case.mkdir()
        choices = [
            t for t in TARGETS if writer.inputs(ws) or t not in ("own-input", "inside-an-input", "parent-of-an-input")
        ]
        if writer.kind == FILE:
            choices.remove("user-file")  # a file is what it writes: the same-kind case
        if writer.flag or writer.replaces:
            choices.append("same-kind")
        how = data.draw(st.sampled_from(choices), label="target")
        target = _same_kind(ws, writer, data.draw) if how == "same-kind" else _target(ws, writer, how, data.draw)
        link = data.draw(st.booleans(), label="through a link")
        if link:
            (ws.case / "link").symlink_to(target)
            target = ws.case / "link"
        kit._current_damage[:] = [f"{writer.name} -> {how}{' (a link)' if link else ''}: {target}"]
        before = tree_digest(ws.root)
        if how == "same-kind" and not link:
            if writer.flag:
                result = kit.outcome(lambda: writer.write(ws, target, False), "output_paths")
                assert result != "ok" and tree_digest(ws.root) == before, (kit._current_damage, result)
            if writer.replaces:
                result = kit.outcome(lambda: writer.write(ws, target, True), "output_paths")
                assert result == "ok", (kit._current_damage, result)
                if writer.kind == CARD:
                    assert (target / "README.md").read_text().startswith("---\n"), kit._current_damage
                else:
                    assert kind_of(target) == writer.kind, kit._current_damage
            return
        flag_named = []

        def attempt():
            try:
                writer.write(ws, target, True)  # even with overwrite allowed
            except EmbswapError as err:
                flag_named.append("overwrite" in str(err))
                raise

        result = kit.outcome(attempt, "output_paths")
        assert result != "ok", kit._current_damage
        assert tree_digest(ws.root) == before, kit._current_damage
        assert flag_named == [False], (kit._current_damage, "names an overwrite option that cannot help")

    try:
        case()
    finally:
        shutil.rmtree(ws.case, ignore_errors=True)


# --- class 8: output to a pipe that closes ------------------------------------------------------------


def _whole_store(path: Path) -> None:
    assert [row for row in verify(path, load=True) if row.failed] == [], path
    assert Store(path).body is not None and Store(path).languages


def _whole_artifact(path: Path) -> None:
    assert [row for row in verify(path, load=True) if row.failed] == [], path


def _whole_model(path: Path) -> None:
    from safetensors.torch import load_file

    assert kind_of(path) == MODEL, path
    assert load_file(path / "model.safetensors")


def _whole_tokenizer(path: Path) -> None:
    from transformers import AutoTokenizer

    assert kind_of(path) == TOKENIZER and len(AutoTokenizer.from_pretrained(str(path))) > 0


def _whole_jsonl(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows and all("text" in row for row in rows)


_TRAIN = ["--seq-len", "16", "--batch-size", "2", "--threads", "1"]
# (command, argv after it given the workspace and output, check of the output, takes --json)
PIPED = {
    "pretrain": (lambda w, o: ["pretrain", "--lang", "de", "--preset", "tiny", "--max-steps", "2", "--tokenizer", w.tok,
                               "--text", w.text, *_TRAIN, "-o", o], _whole_store, True),
    "transfer": (lambda w, o: ["transfer", "--body", w.body, "--lang", "de", "--tokenizer", w.tok, "--text", w.text,
                               "--max-steps", "2", *_TRAIN, "-o", o], _whole_artifact, True),
    "finetune": (lambda w, o: ["finetune", "--body", w.body, "--pack", w.pack, "--task", "classification",
                               "--train", w.rows, "--max-steps", "2", *_TRAIN, "-o", o], _whole_artifact, True),
    "compose": (lambda w, o: ["compose", "--body", w.body, "--pack", w.pack, "-o", o], _whole_model, False),
    "split": (lambda w, o: ["split", w.ckpt, "--lang", "en", "-o", o], _whole_store, False),
    "tokenizer train": (lambda w, o: ["tokenizer", "train", "--text", w.text, "--body", w.body, "--vocab-size", "120",
                                      "-o", o], _whole_tokenizer, True),
    "data export": (lambda w, o: ["data", "export", "bible-genre", "--lang", "de", "--split", "test", "-o", o],
                    _whole_jsonl, False),
}  # fmt: skip


def run_with_closing_pipe(argv: list, cwd: Path, *, streams: str, read_bytes: int | None, timeout: float = 300) -> int:
    """Run the CLI with ``streams`` ("both", "stdout", "stderr") on a pipe that is closed before it starts
    (``read_bytes`` None) or after the first ``read_bytes`` bytes arrive; the other stream goes to /dev/null."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBSWAP_CHECK_CACHE": "off", "TOKENIZERS_PARALLELISM": "false"}
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    read, write = os.pipe()
    pipe_out = write if streams in ("both", "stdout") else subprocess.DEVNULL
    pipe_err = write if streams in ("both", "stderr") else subprocess.DEVNULL
    try:
        run = subprocess.Popen([sys.executable, "-m", "embswap.cli.main", *map(str, argv)], stdout=pipe_out,
                               stderr=pipe_err, stdin=subprocess.DEVNULL, cwd=cwd, env=env,
                               # the benchmark caps its own address space; a fresh interpreter needs its own
                               preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (hard, hard)))  # fmt: skip
    finally:
        os.close(write)
    try:
        if read_bytes:
            got = 0
            while got < read_bytes:
                chunk = os.read(read, read_bytes - got)
                if not chunk:
                    break
                got += len(chunk)
    finally:
        os.close(read)
    return run.wait(timeout=timeout)


def fuzz_closed_pipe(samples: kit.Samples, max_examples: int, *, derandomize: bool) -> None:
    """Commands that print progress and write an artifact, their output on a pipe that closes early: each
    exits 0 with an artifact that verifies."""
    ws = workspace(samples)

    @_settings(max_examples, derandomize)
    @given(command=st.sampled_from(sorted(PIPED)), streams=st.sampled_from(["both", "stderr", "stdout"]),
           read_bytes=st.none() | st.integers(1, 400), as_json=st.booleans())  # fmt: skip
    def case(command, streams, read_bytes, as_json):
        args, check, takes_json = PIPED[command]
        shutil.rmtree(ws.case, ignore_errors=True)
        ws.case.mkdir()
        out = ws.case / ("out.jsonl" if command == "data export" else "out")
        argv = args(ws, out) + (["--json"] if as_json and takes_json else [])
        kit._current_damage[:] = [f"{command} {streams} closed after {read_bytes} bytes"]
        kit.STATS["closed_pipe:cases"] += 1
        start = time.perf_counter()
        code = run_with_closing_pipe(argv, ws.case, streams=streams, read_bytes=read_bytes)
        assert code == 0, (kit._current_damage, code)
        check(out)
        kit.STATS["closed_pipe:exit 0, output whole"] += 1
        elapsed_ms = int((time.perf_counter() - start) * 1000)
        if elapsed_ms >= kit.SLOWEST["ms"]:
            kit.SLOWEST.update(ms=elapsed_ms, case=f"closed_pipe: {kit._current_damage[0]}")
        kit.STATS["slowest_case_ms"] = max(kit.STATS["slowest_case_ms"], elapsed_ms)

    try:
        case()
    finally:
        shutil.rmtree(ws.case, ignore_errors=True)


# --- class 9: messages --------------------------------------------------------------------------------

# Text a user might type by mistake, or an attacker plant: separators, dots, escapes, control characters.
_JUNK = st.lists(st.sampled_from(list("ab-_.é/ ") + ["\x1b", "[31m", "\x1b]0;title\x07", "\r", "\n", "\t", "\u202e"]),
                 min_size=1, max_size=8).map("".join)  # fmt: skip
_BAD_NAMES = st.sampled_from(["../x", "a/b", "..", ".", "", "en\x1b[2J", "-", "x" * 200, "C:\\x"]) | _JUNK
_INVALID_NAMES = _BAD_NAMES.filter(lambda name: not is_valid_name(name))  # a valid one would start a training


def _missing(ws: Workspace, draw) -> Path:
    return ws.root / "nowhere" / draw(_JUNK.filter(lambda s: "/" not in s), label="missing name")


def _wrong_path(ws: Workspace, draw, *accepted: str) -> Path:
    """A path that is none of the ``accepted`` kinds where one is expected: missing, a user's file or folder,
    or something else of the workspace."""
    choices = ["missing", "user-file", "user-folder", *sorted(k for k in ws.kinds() if k not in (*accepted, FILE))]
    wanted = " or ".join(accepted)
    how = draw(st.sampled_from(choices), label=f"not a {wanted}")
    if how == "missing":
        return _missing(ws, draw)
    if how == "user-file":
        path = ws.case / "notes.bin"
        path.write_bytes(draw(st.binary(max_size=32), label="bytes"))
        return path
    if how == "user-folder":
        (ws.case / "mine").mkdir(exist_ok=True)
        (ws.case / "mine" / "thesis.tex").write_text("\\documentclass{article}\n")
        return ws.case / "mine"
    return ws.kinds()[how]


_NON_POSITIVE = st.sampled_from(["0", "-1", "-5"])
# Values each option cannot take where the default (non-positive) ones do not fit: 0 steps is a valid run,
# a vocabulary must hold more than the 5 special tokens, a sequence at least 8 tokens, noise is 0 or more.
_OUT_OF_RANGE = {"--max-steps": ["-1", "-5"], "--vocab-size": ["0", "-5", "1", "5"], "--seq-len": ["0", "-1", "7"],
                 "--noise": ["-0.1", "-1"]}  # fmt: skip


def _bad_count(draw, *options: str) -> list[str]:
    """One of ``options`` with a value it cannot take."""
    option = draw(st.sampled_from(options), label="option")
    return [option, draw(st.sampled_from(_OUT_OF_RANGE.get(option, ["0", "-1", "-5"])), label="value")]


_NOT_A_NUMBER = st.sampled_from(["abc", "1e", "", "--", "1,5", "٣"])
# --device values torch would refuse only once the work had started (it takes cpu, cuda, cuda:N, mps).
_BAD_DEVICES = st.sampled_from(["../x", "gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", "", " cpu", "tpu", "cuda0"])
_BAD_DEVICES |= _JUNK.filter(lambda s: not s.startswith("-"))


def _mistakes(ws: Workspace) -> dict[str, Callable]:
    """name -> (draw) -> argv: one kind of mistake with one command."""
    o = ws.case / "out"
    body, pack, store, text, rows = ws.body, ws.pack, ws.store, ws.text, ws.rows
    data = ws.case / "data.jsonl"
    loadable = (*ARTIFACT_KINDS, STORE)  # what inspect, verify and card read
    with_device = {
        "transfer": ["transfer", "--body", body, "--lang", "de", "--text", text, "-o", o],
        "pretrain": ["pretrain", "--lang", "de", "--text", text, "-o", o],
        "finetune": ["finetune", "--body", body, "--pack", pack, "--task", "classification", "--train", rows, "-o", o],
        "evaluate": ["evaluate", "--store", store, "--task", "genre", "--lang", "en", "--data", rows],
        "diagnose": ["diagnose", "--store", store, "--task", "genre", "--data", rows],
    }

    def hf_model_for_an_artifact(d) -> list:
        model = d(st.sampled_from([ws.ckpt, ws.model]), label="Hugging Face model")
        return d(st.sampled_from([
            ["compose", "--body", model, "--pack", pack, "-o", o],
            ["compose", "--body", body, "--pack", model, "-o", o],
            ["compose", "--body", body, "--pack", pack, "--task", model, "-o", o],
            ["transfer", "--body", model, "--lang", "de", "--text", text, "-o", o],
            ["finetune", "--body", body, "--pack", model, "--task", "classification", "--train", rows, "-o", o],
            ["evaluate", "--body", body, "--pack", model, "--task", ws.task, "--data", rows],
        ]), label="command")  # fmt: skip

    return {
        # missing paths and wrong kinds
        "inspect: not an artifact": lambda d: ["inspect", _wrong_path(ws, d, *loadable)],
        "verify: not an artifact": lambda d: ["verify", _wrong_path(ws, d, *loadable)],
        "compose: --body not a body": lambda d: ["compose", "--body", _wrong_path(ws, d, "body"), "--pack", pack, "-o", o],
        "compose: --pack not a pack": lambda d: ["compose", "--body", body, "--pack", _wrong_path(ws, d, "language_pack"), "-o", o],
        "compose: --store not a store": lambda d: ["compose", "--store", _wrong_path(ws, d, STORE), "--lang", "en", "-o", o],
        "compose: --task not a task": lambda d: ["compose", "--body", body, "--pack", pack, "--task", _wrong_path(ws, d, "task_module"), "-o", o],
        "split: not a checkpoint": lambda d: ["split", _wrong_path(ws, d, MODEL), "--lang", "en", "-o", o],
        "transfer: --body not a body": lambda d: ["transfer", "--body", _wrong_path(ws, d, "body"), "--lang", "de", "--text", text, "-o", o],
        "transfer: --text missing": lambda d: ["transfer", "--body", body, "--lang", "de", "--text", _missing(ws, d), "-o", o],
        "transfer: --tokenizer not one": lambda d: ["transfer", "--body", body, "--lang", "de", "--tokenizer", _wrong_path(ws, d, TOKENIZER, MODEL, "language_pack", ADAPTERS), "--text", text, "-o", o],
        "pretrain: --text missing": lambda d: ["pretrain", "--lang", "de", "--text", _missing(ws, d), "-o", o],
        "finetune: --pack not a pack": lambda d: ["finetune", "--body", body, "--pack", _wrong_path(ws, d, "language_pack"), "--task", "classification", "--train", rows, "-o", o],
        "finetune: --train missing": lambda d: ["finetune", "--body", body, "--pack", pack, "--task", "classification", "--train", _missing(ws, d), "-o", o],
        "evaluate: --store not a store": lambda d: ["evaluate", "--store", _wrong_path(ws, d, STORE), "--task", "genre", "--lang", "en", "--data", rows],
        "diagnose: --store not a store": lambda d: ["diagnose", "--store", _wrong_path(ws, d, STORE), "--task", "genre", "--data", rows],
        "tokenizer train: --text missing": lambda d: ["tokenizer", "train", "--text", _missing(ws, d), "-o", o],
        "card: not an artifact": lambda d: ["card", _wrong_path(ws, d, *loadable)],
        "push: missing": lambda d: ["push", _missing(ws, d), "--repo", "me/x"],
        "search: --body not a body": lambda d: ["search", "--body", _missing(ws, d)],
        "any: a Hugging Face model for an artifact": hf_model_for_an_artifact,
        # unknown names
        "compose: unknown language": lambda d: ["compose", "--store", store, "--lang", d(_BAD_NAMES | st.just("fr")), "-o", o],
        "compose: unknown task": lambda d: ["compose", "--store", store, "--lang", "en", "--task", d(_BAD_NAMES | st.just("gnere")), "-o", o],
        "compose: empty task name": lambda d: ["compose", "--store", store, "--lang", "en", "--task", "", "-o", o],
        "evaluate: unknown task": lambda d: ["evaluate", "--store", store, "--task", d(_BAD_NAMES | st.just("gnere")), "--lang", "en", "--data", rows],
        "evaluate: unknown language": lambda d: ["evaluate", "--store", store, "--task", "genre", "--lang", d(_BAD_NAMES | st.just("fr")), "--data", rows],
        "transfer: bad language code": lambda d: ["transfer", "--body", body, "--lang", d(_INVALID_NAMES), "--text", text, "-o", o],
        "pretrain: bad language code": lambda d: ["pretrain", "--lang", d(_INVALID_NAMES), "--text", text, "-o", o],
        "split: bad language code": lambda d: ["split", ws.ckpt, "--lang", d(_INVALID_NAMES), "-o", o],
        "data export: unknown source": lambda d: ["data", "export", d(_BAD_NAMES | st.just("bible-genr")), "-o", data],
        "data export: unknown language": lambda d: ["data", "export", "bible-genre", "--lang", d(_BAD_NAMES | st.just("zz")), "-o", data],
        "diagnose: unknown task": lambda d: ["diagnose", "--store", store, "--task", d(_BAD_NAMES | st.just("gnere")), "--data", rows],
        # bad option values
        "transfer: count out of range": lambda d: ["transfer", "--body", body, "--lang", "de", "--text", text, *_bad_count(d, "--max-steps", "--batch-size", "--seq-len", "--vocab-size"), "-o", o],
        "transfer: unknown choice": lambda d: ["transfer", "--body", body, "--lang", "de", "--text", text, d(st.sampled_from(["--init", "--objective", "--device", "--tokenizer-model", "--pooling", "--anchors"])), d(_BAD_NAMES | st.just("bogus")), "-o", o],
        "pretrain: unknown choice": lambda d: ["pretrain", "--lang", "de", "--text", text, d(st.sampled_from(["--preset", "--family", "--vocab", "--tokenizer-model"])), d(_BAD_NAMES | st.just("huge")), "-o", o],
        "pretrain: count out of range": lambda d: ["pretrain", "--lang", "de", "--text", text, *_bad_count(d, "--max-steps", "--batch-size", "--seq-len", "--vocab-size"), "-o", o],
        "finetune: count out of range": lambda d: ["finetune", "--body", body, "--pack", pack, "--task", "classification", "--train", rows, *_bad_count(d, "--epochs", "--batch-size", "--max-steps", "--seq-len", "--noise"), "-o", o],
        "tokenizer train: bad vocabulary": lambda d: ["tokenizer", "train", "--text", text, *_bad_count(d, "--vocab-size"), "-o", o],
        "tokenizer train: unknown choice": lambda d: ["tokenizer", "train", "--text", text, d(st.sampled_from(["--family", "--model"])), d(_BAD_NAMES | st.just("gpt2")), "-o", o],
        "any: bad device": lambda d: [*with_device[d(st.sampled_from(sorted(with_device)), label="command")], "--device", d(_BAD_DEVICES, label="device")],
        # usage errors
        "usage: not a number": lambda d: ["transfer", "--body", body, "--lang", "de", "--text", text, d(st.sampled_from(["--max-steps", "--lr", "--batch-size"])), d(_NOT_A_NUMBER), "-o", o],
        "usage: bad choice": lambda d: ["finetune", "--body", body, "--pack", pack, "--task", d(_BAD_NAMES | st.just("translation")), "--train", rows, "-o", o],
        "usage: unknown option": lambda d: ["compose", "-o", o, "--" + d(_JUNK, label="option")],
        "usage: unknown command": lambda d: [d(_JUNK.filter(lambda s: not s.startswith("-")) | st.just("compse"), label="command")],
        "usage: missing option": lambda d: d(st.sampled_from([["compose"], ["transfer", "--lang", "de"], ["pull", "me/x"], ["finetune", "--body", body], ["diagnose"], ["data", "export", "bible-genre"]])),
        # "--" alone ends the options and is no argument: `verify PACK --` is a correct command.
        "usage: extra argument": lambda d: ["verify", pack, d(_JUNK.filter(lambda s: s != "--") | st.just("extra"))],
    }  # fmt: skip


# Mistakes found before any work: the error line is all the command prints (no progress line first).
_FOUND_FIRST = {"transfer: count out of range", "transfer: unknown choice", "pretrain: unknown choice",
                "pretrain: count out of range", "finetune: count out of range", "tokenizer train: bad vocabulary",
                "tokenizer train: unknown choice", "any: bad device", "compose: empty task name"}  # fmt: skip
# What the error line must say for these (beyond its form).
_SAYS = {
    "any: bad device": "is not a device; use cpu, cuda, cuda:N (N: the GPU's number) or mps",
    "compose: empty task name": "error: task name '' is not allowed: use 1 to 100 ASCII letters",
    "any: a Hugging Face model for an artifact": "is a Hugging Face model folder (model_type 'bert'), not an embswap ",
}


def _escapes(ws: Workspace, draw) -> str:
    """``inspect`` of a pack whose config holds control characters and markup: exit 0, all of it printable."""
    folder = ws.case / "hostile"
    shutil.copytree(ws.pack, folder)
    config = json.loads((folder / "config.json").read_text())
    pieces = st.sampled_from(
        ["\x1b[31m", "\x1b]0;pwned\x07", "\x1b[2J", "\x9b", "\r", "\b", "\u202e", "[bold]", "a", "\n"]
    )
    value = draw(st.lists(pieces, min_size=1, max_size=6).map("".join), label="hostile text")
    place = draw(st.sampled_from(["language", "provenance value", "provenance key"]), label="where")
    if place == "language":
        config["language"] = value
    else:
        config["provenance"] = {"note": value} if place == "provenance value" else {value: 1}
    (folder / "config.json").write_text(json.dumps(config))
    as_json = draw(st.booleans(), label="--json")
    code, out, err = run_cli(["inspect", folder, *["--json"] * as_json])
    assert code == 0, (value, err)
    assert all(ch.isprintable() or ch == "\n" for ch in out + err), repr(out + err)
    return "inspect output escaped"


def check_message(argv: list, code: int, out: str, err: str, *, found_first: bool = False) -> str:
    """The outcome label of one bad command line, after checking its message is one clean ``error:`` line.

    Exit 1: the error line is the last line on stderr and the only one that says ``error:``; lines before
    it are progress the command printed before it found the mistake (counted apart; none when
    ``found_first``); stdout is empty but for verify's report. Exit 2 (usage): the error line, then at most
    a ``try: embswap ... --help`` hint.
    """
    lines = err.splitlines()
    assert code in (1, 2), (argv, code, out, err)
    errors = [i for i, line in enumerate(lines) if line.startswith("error")]
    if code == 1:
        assert errors == [len(lines) - 1] and len(lines[-1]) > len("error: "), (argv, err)
        assert len(lines) == 1 or not found_first, (argv, "progress printed before the mistake was found", err)
        assert out == "" or argv[0] == "verify", (argv, out)
    else:
        assert errors == [0] and len(lines) <= 2, (argv, err)
        assert all(line.startswith("try: embswap") for line in lines[1:]), (argv, err)
    assert lines[errors[0]].startswith("error: "), (argv, err)
    assert "Traceback" not in out + err and not any(ch in err for ch in "╭╮╰╯│─"), (argv, err)
    assert all(ch.isprintable() or ch == "\n" for ch in out + err), (argv, repr(out + err))
    return f"exit {code}, one error line" + (", after progress lines" if len(lines) > 1 and code == 1 else "")


def fuzz_messages(samples: kit.Samples, max_examples: int, *, derandomize: bool) -> None:
    """Bad inputs to every command: one ``error:`` line (and for a usage error a ``try:`` hint), exit 1 or 2."""
    ws = workspace(samples)
    mistakes = _mistakes(ws)
    names = sorted(mistakes) + ["inspect: hostile config text"]

    @_settings(max_examples, derandomize)
    @given(name=st.sampled_from(names), data=st.data())
    def case(name, data):
        shutil.rmtree(ws.case, ignore_errors=True)
        ws.case.mkdir()
        start = time.perf_counter()
        if name == "inspect: hostile config text":
            label = _escapes(ws, data.draw)
        else:
            argv = mistakes[name](data.draw)
            kit._current_damage[:] = [f"{name}: {argv!r}"[:300]]
            before = tree_digest(ws.root)
            code, out, err = run_cli(argv)
            label = check_message(argv, code, out, err, found_first=name in _FOUND_FIRST)
            assert _SAYS.get(name, "") in err, (argv, err)
            changed = {k for k, v in tree_digest(ws.root).items() if before.get(k) != v}
            assert not {k for k in changed if not k.startswith("case/")}, (argv, changed)  # nothing of the user's
        kit.STATS["messages:cases"] += 1  # counted once done: hypothesis may abandon a case while drawing
        kit.STATS[f"messages:{label}"] += 1
        elapsed_ms = int((time.perf_counter() - start) * 1000)
        kit.STATS["slowest_case_ms"] = max(kit.STATS["slowest_case_ms"], elapsed_ms)

    try:
        case()
    finally:
        shutil.rmtree(ws.case, ignore_errors=True)


FAMILIES = {
    "output_paths": fuzz_output_paths,
    "closed_pipe": fuzz_closed_pipe,
    "messages": fuzz_messages,
}
