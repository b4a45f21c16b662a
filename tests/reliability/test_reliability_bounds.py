"""Artifacts that pass `verify --load` cannot crash `compose`; JSON, tokenizer files and safetensors
headers are bounded (bytes, objects and lists, nesting, tensors) and checked before hashing; every
error that escapes a command is one `error:` line (a full disk, a usage error, a bug); `inspect`
escapes what an untrusted config holds."""

import importlib
import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import embswap.io as eio
from embswap import LanguagePack, Store, TaskModule
from embswap.cli.main import app
from embswap.errors import CorruptArtifactError, EmbswapError
from embswap.io import load_json
from embswap.safety import MAX_TENSORS, MAX_TOKENIZER_BYTES
from embswap.verify import verify
from tests.helpers import reliability_bounds as bounds
from tests.helpers import reliability_kit as kit
from tests.helpers.models import EN_TEXT

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return kit.make_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def composable_store(samples):
    """A store whose body, pack and a real classification task compose (the family's control)."""
    body, pack, task = bounds.base_parts(samples)
    store = Store(samples.root / "composable")
    store.save_body(body)
    store.save_pack(pack)
    store.save_task("genre", task)
    return store


# --- class 5: what verify --load passes, compose composes --------------------------------------------


def test_compose_shapes_family(samples):
    before = kit.STATS["compose_shapes:cases"]
    bounds.fuzz_compose_shapes(samples, 40, derandomize=True)
    outcomes = {k.split(":", 1)[1]: v for k, v in kit.STATS.items() if k.startswith("compose_shapes:")}
    assert kit.STATS["compose_shapes:cases"] - before == 40
    assert outcomes.get("ok", 0) > 0 and sum(v for k, v in outcomes.items() if k not in ("ok", "cases")) > 0, outcomes


def test_a_body_config_asking_for_gigabytes_fails_on_the_meta_device(samples, monkeypatch):
    ecompose = importlib.import_module("embswap.compose")
    body, pack, _ = bounds.base_parts(samples)
    body = bounds.dataclasses.replace(body, model_config={**body.model_config, "intermediate_size": 10**9})
    body.__dict__.pop("fingerprint", None)
    pack = bounds.dataclasses.replace(pack, body_fingerprint=body.fingerprint)
    builds: list = []
    _, counting = bounds._real_builds(builds)
    monkeypatch.setattr(ecompose, "_build", counting)
    with pytest.raises(CorruptArtifactError) as err:
        ecompose.compose(body, pack)  # 10^9 x 32 floats per layer: 128 GB if it were built
    assert str(err.value) == (
        "the body gives 'bert.encoder.layer.0.intermediate.dense.weight' the shape (64, 32), but the BertForMaskedLM "
        "that the body's config describe needs (1000000000, 32); the artifacts do not fit together: use the ones "
        "trained together, or save them again"
    )
    assert builds == []


def test_verify_load_reports_a_task_that_does_not_fit_its_store(composable_store):
    task = TaskModule.from_pretrained(composable_store.task_path("genre"))
    wrong = TaskModule(task=task.task, labels=["a", "b"], head=task.head, body_fingerprint=task.body_fingerprint)
    composable_store.save_task("wrong", wrong)
    rows = {(Path(r.artifact).name, r.file): r for r in verify(composable_store.path, load=True)}
    assert rows[("genre", "(compose)")].status == "ok" and rows[("en", "(compose)")].status == "ok"
    bad = rows[("wrong", "(compose)")]
    assert bad.status == "error" and bad.reason.startswith(
        "task 'classification' (its head) gives 'classifier.weight' the shape (3, 32), but the "
        "BertForSequenceClassification that the body's config and the task's 2 labels describe needs (2, 32)"
    )
    alone = {r.file: r.status for r in verify(composable_store.task_path("wrong"), load=True)}
    assert alone == {"head.safetensors": "ok", "(load)": "ok", "(compose)": "error"}
    out = runner.invoke(app, ["compose", "--store", str(composable_store.path), "--lang", "en", "--task", "wrong",
                              "-o", str(composable_store.path.parent / "wrong-model")])  # fmt: skip
    assert out.exit_code == 1 and out.stderr.count("\n") == 1 and out.stderr.startswith("error: task 'classification'")


# --- class 6: bounds by bytes and by structure, headers before hashes -------------------------------


def test_json_bounds_family(samples):
    before_rss = kit.peak_rss_mb()
    bounds.fuzz_json_bounds(samples, 45, derandomize=True)
    assert kit.STATS["json_bounds:cases"] >= 45
    assert kit.peak_rss_mb() - before_rss < 300  # nothing was parsed into millions of objects


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"a": [' + ",".join(["{}"] * 100_001) + "]}", "holds 100003 JSON objects and lists, more than the 100000"),
        ("[" * 65 + "]" * 65, "is nested 65 levels deep, more than the 64"),
        ('{"a": "' + "x" * 4_000_000 + '"}', "is too large: more than the 4000000 bytes a config.json may have"),
        ('{"a": 1' + "0" * 5000 + "}", "is not valid JSON (Exceeds the limit (4300 digits)"),
        ('{"a": "' + "[{" * 200_000 + '"}', None),  # brackets in a string are no structure
    ],
)
def test_load_json_bounds_say_what_they_are(tmp_path, text, message):
    path = tmp_path / "config.json"
    path.write_text(text)
    if message is None:
        assert load_json(path) == json.loads(text)
        return
    with pytest.raises(CorruptArtifactError) as err:
        load_json(path)
    assert str(err.value).startswith(f"{path} {message}") and "\n" not in str(err.value)


def _no_hashing(monkeypatch, name: str):
    """Fail the test if the file ``name`` is hashed (verify goes on to hash the artifact's other files)."""
    original = eio.file_sha256

    def refuse(path):
        if Path(path).name == name:
            raise AssertionError(f"{path} was hashed before its cheap checks")
        return original(path)

    monkeypatch.setattr(eio.reading, "file_sha256", refuse)
    monkeypatch.setattr(importlib.import_module("embswap.verify"), "file_sha256", refuse)


def test_a_sparse_file_claiming_terabytes_is_refused_before_hashing(samples, tmp_path, monkeypatch):
    folder = tmp_path / "pack"
    import shutil

    shutil.copytree(samples.pack, folder)
    weights = folder / "embeddings.safetensors"
    raw = json.dumps({"word_embeddings": {"dtype": "F32", "shape": [2**39], "data_offsets": [0, 2**41]}}).encode()
    with open(weights, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + 2**41)  # 2 TB on paper, nothing on disk
    _no_hashing(monkeypatch, weights.name)
    with pytest.raises(EmbswapError, match=r"holds 2199\.0 GB of tensors, more than this machine's"):
        LanguagePack.from_pretrained(folder)
    rows = {r.file: r for r in verify(folder)}
    assert rows["embeddings.safetensors"].status == "error" and "2199.0 GB" in rows["embeddings.safetensors"].reason


def test_a_tokenizer_json_over_its_cap_is_refused_before_hashing(samples, tmp_path, monkeypatch):
    folder = tmp_path / "pack"
    import shutil

    shutil.copytree(samples.pack, folder)
    with open(folder / "tokenizer" / "tokenizer.json", "ab") as handle:
        handle.truncate(MAX_TOKENIZER_BYTES + 1)
    _no_hashing(monkeypatch, "tokenizer.json")
    with pytest.raises(CorruptArtifactError) as err:
        LanguagePack.from_pretrained(folder)
    assert str(err.value) == (
        f"{folder / 'tokenizer' / 'tokenizer.json'} is too large: {MAX_TOKENIZER_BYTES + 1} bytes, more than the "
        f"{MAX_TOKENIZER_BYTES} a tokenizer or other non-weight file may have; do not use this artifact"
    )


def test_a_header_listing_too_many_tensors_is_refused_before_parsing(tmp_path):
    path = tmp_path / "many.safetensors"
    path.write_bytes(bounds.many_tensors_header(MAX_TENSORS + 1))
    with pytest.raises(CorruptArtifactError, match="holds 300004 JSON objects and lists, more than the 300002"):
        eio.load_tensors(path)


# --- class 9: one error line, whatever escapes ------------------------------------------------------


def _script(*args, preexec_fn=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBSWAP_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "embswap.cli.main", *args], check=False, capture_output=True, text=True,
                          env=env, preexec_fn=preexec_fn, timeout=300)  # fmt: skip


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_compose_under_a_file_size_limit_is_one_line_and_keeps_the_previous_output(composable_store, tmp_path):
    store = str(composable_store.path)
    output = tmp_path / "model"
    done = _script("compose", "--store", store, "--lang", "en", "-o", str(output))
    assert done.returncode == 0, done.stderr
    before = _files(output)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # smaller than the weights

    for target, kept in ((output, "nothing was replaced: the previous artifact there is unchanged"),
                         (tmp_path / "fresh", "nothing was written there")):  # fmt: skip
        failed = _script("compose", "--store", store, "--lang", "en", "-o", str(target), preexec_fn=limit)
        assert failed.returncode == 1 and failed.stdout == ""
        assert failed.stderr == (
            f"error: could not save {target}: File too large (errno 27; a file-size limit (ulimit -f) was hit); {kept}: "
            "free disk space, raise the file-size limit or fix permissions, then save again\n"
        )
    assert _files(output) == before
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize(
    "error",
    [RuntimeError("boom\nsecond line"), IndexError("index 7 is out of bounds"), KeyError("bert.pooler"),
     ValueError(""), OSError(5, "Input/output error"), type("PanicException", (BaseException,), {})("regex panicked")],
    ids=lambda e: type(e).__name__,
)  # fmt: skip
def test_an_unexpected_error_is_one_line_with_the_traceback_on_request(composable_store, tmp_path, monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(importlib.import_module("embswap.compose"), "export", fail)
    args = ["compose", "--store", str(composable_store.path), "--lang", "en", "-o", str(tmp_path / "m")]
    monkeypatch.delenv("EMBSWAP_DEBUG", raising=False)
    result = runner.invoke(app, args)
    first = (str(error).splitlines() or [""])[0] or type(error).__name__
    assert result.exit_code == 1 and result.stderr == (
        f"error: unexpected error ({type(error).__name__}): {first}; run with EMBSWAP_DEBUG=1 for the traceback\n"
    )
    monkeypatch.setenv("EMBSWAP_DEBUG", "1")
    if isinstance(error, Exception):
        assert runner.invoke(app, args).exception is error
    else:  # the test runner itself lets a BaseException through
        with pytest.raises(type(error)):
            runner.invoke(app, args)


@pytest.mark.parametrize(
    "args, message, hint",
    [(["compose"], "Missing option '-o' / '--output'.", "embswap compose"),
     (["compose", "-o", "x", "--bogus"], "No such option: --bogus", "embswap compose"),
     (["verify"], "Missing argument 'path'.", "embswap verify"),
     (["no-such-command"], "No such command 'no-such-command'.", "embswap")],
)  # fmt: skip
def test_usage_errors_are_one_error_line_and_a_hint(args, message, hint):
    result = _script(*args)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: {message}") and lines[1:] == [f"try: {hint} --help"], result.stderr


@settings(max_examples=25, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(value=st.text(st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Ll"]), min_size=1, max_size=12))
def test_inspect_escapes_what_an_untrusted_config_holds(samples, value):
    folder = samples.root / "inspected"
    if not folder.exists():
        import shutil

        shutil.copytree(samples.pack, folder)
    config = json.loads((folder / "config.json").read_text())
    config["provenance"] = {"note": "[bold]" + value, value: 1}
    config["language"] = value
    (folder / "config.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["inspect", str(folder)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert all(ch.isprintable() or ch == "\n" for ch in result.stdout), repr(result.stdout)
    assert "[bold]" in result.stdout  # shown as text, not read as markup


def test_evaluate_names_the_store_tasks_when_the_task_is_unknown(composable_store):
    result = runner.invoke(app, ["evaluate", "--store", str(composable_store.path), "--task", "gnere", "--lang", "en",
                                 "--data", "x.{lang}.jsonl"])  # fmt: skip
    assert result.exit_code == 1 and result.stderr.startswith(
        f"error: store {composable_store.path} has no task 'gnere' (it has: genre"
    )


def test_finetune_takes_threads_and_quiet(bert_store, tmp_path, monkeypatch):
    rows = tmp_path / "train.jsonl"
    rows.write_text(
        "".join(json.dumps({"text": t, "label": "a" if i % 2 else "b"}) + "\n" for i, t in enumerate(EN_TEXT))
    )
    threads = torch.get_num_threads()
    try:
        result = runner.invoke(app, ["finetune", "--body", str(bert_store.body_path), "--pack", str(bert_store.pack_path("en")),
                                     "--task", "classification", "--train", str(rows), "-o", str(tmp_path / "t"),
                                     "--max-steps", "1", "--batch-size", "4", "--seq-len", "16", "--threads", "1",
                                     "--quiet"])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert "━" not in result.stderr and "it/s" not in result.stderr  # no progress bar
