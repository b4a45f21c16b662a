"""Untrusted artifacts: validated before anything is allocated, never unpickled or executed;
hashes checked streaming (skippable); `embswap verify`; write failures and locks in one process."""

import errno
import hashlib
import json
import os
import re
import shutil
import struct
import threading
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import embswap.io as eio
from embswap import Body, LanguagePack, Store, TaskModule, split_model
from embswap.cli.main import app
from embswap.errors import ArtifactBusyError, ArtifactWriteError, CorruptArtifactError
from embswap.io import atomic_folder, file_sha256, load_tensors, path_lock, read_consistently
from embswap.safety import MAX_HEADER_BYTES

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def saved(tmp_path, bert_mlm):
    model, tokenizer = bert_mlm
    body, pack = split_model(model, tokenizer, "en")
    body.save_pretrained(tmp_path / "body")
    pack.save_pretrained(tmp_path / "pack")
    return tmp_path, body, pack


@pytest.fixture
def no_safe_open(monkeypatch):
    """Fail the test if a loader gets as far as handing the file to safetensors (which allocates)."""

    def refuse(*args, **kwargs):
        raise AssertionError("safe_open reached: the file was not rejected before allocation")

    monkeypatch.setattr(eio.reading, "safe_open", refuse)


def _safetensors(path: Path, header: dict, data: bytes = b"") -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message
    return message


# --- safetensors headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offsets, reason",
    [
        ([0, 4 * 10**12], "tensors fill 4000000000000 bytes but the data section has 64"),
        ([0, 64], "needs 4000000000000 bytes, its range holds 64"),
    ],
)
def test_header_claiming_1e12_elements_is_rejected_before_allocation(tmp_path, no_safe_open, offsets, reason):
    path = _safetensors(
        tmp_path / "bomb.safetensors",
        {"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": offsets}},
        b"\0" * 64,
    )
    with pytest.raises(CorruptArtifactError, match=f"not a readable safetensors file .*{reason}") as err:
        load_tensors(path)
    _one_line(err)


@pytest.mark.parametrize(
    "header, data, reason",
    [
        ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8, "needs 16 bytes"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 16, "data section has 16"),
        ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "not a list of sizes"),
        ({"w": {"dtype": "X1", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "starts at byte 4, expected 8"),
        ([1, 2], b"", "not a JSON object"),
    ],
)  # fmt: skip
def test_inconsistent_headers(tmp_path, no_safe_open, header, data, reason):
    path = _safetensors(tmp_path / "x.safetensors", header, data)
    with pytest.raises(CorruptArtifactError, match=re.escape(reason)) as err:
        load_tensors(path)
    _one_line(err)


def test_oversized_header_length(tmp_path, no_safe_open):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{}")
    with pytest.raises(CorruptArtifactError, match="more than the 100000000 allowed"):
        load_tensors(path)
    path.write_bytes(struct.pack("<Q", 2**64 - 1))
    with pytest.raises(CorruptArtifactError, match="more than"):
        load_tensors(path)


def test_expected_shapes(tmp_path):
    path = tmp_path / "x.safetensors"
    eio.save_tensors({"w": torch.ones(3, 4), "b": torch.ones(3)}, path)
    assert set(load_tensors(path, expected_shapes={"w": (3, None), "b": (3,)})) == {"w", "b"}
    with pytest.raises(CorruptArtifactError, match=r"tensor 'w' has shape \(3, 4\), its config.json implies \(3, 5\)"):
        load_tensors(path, expected_shapes={"w": (3, 5)})
    with pytest.raises(CorruptArtifactError, match="has no tensor 'z'"):
        load_tensors(path, expected_shapes={"z": (1,)})


def test_pack_config_disagreeing_with_matrix_fails_before_allocation(saved, monkeypatch):
    tmp, body, pack = saved
    config_path = tmp / "pack" / "config.json"
    config = json.loads(config_path.read_text())
    config["vocab_size"] = 10**12
    config_path.write_text(json.dumps(config))
    monkeypatch.setattr(eio.reading, "safe_open", lambda *a, **k: pytest.fail("allocated before checking the shape"))
    with pytest.raises(CorruptArtifactError, match=r"'word_embeddings' has shape .*implies \(1000000000000, 32\)"):
        LanguagePack.from_pretrained(tmp / "pack")


# --- NaN / Inf ----------------------------------------------------------------------------------


def test_nan_and_inf_weights_are_reported_by_tensor(saved):
    tmp, body, pack = saved
    bad = pack.word_embeddings.clone()
    bad[7, 3] = float("nan")
    LanguagePack(language="en", tokenizer=pack.tokenizer, word_embeddings=bad, output_bias=pack.output_bias,
                 body_fingerprint=body.fingerprint).save_pretrained(tmp / "nan-pack")  # fmt: skip
    with pytest.raises(
        CorruptArtifactError, match=r"tensor 'word_embeddings' holds NaN or Inf \(first at flat index 227\)"
    ):
        LanguagePack.from_pretrained(tmp / "nan-pack")
    name = sorted(n for n, t in body.tensors.items() if t.is_floating_point())[0]
    tensors = {**body.tensors, name: body.tensors[name].clone().fill_(float("inf"))}
    inf_body = Body(family=body.family, model_config=body.model_config, special_tokens=body.special_tokens,
                    tensors=tensors, embedding_dim=body.embedding_dim)  # fmt: skip
    inf_body.save_pretrained(tmp / "inf-body")
    with pytest.raises(CorruptArtifactError, match=f"tensor '{re.escape(name)}' holds NaN or Inf"):
        Body.from_pretrained(tmp / "inf-body")
    task = TaskModule(task="classification", labels=["a", "b"], body_fingerprint=body.fingerprint,
                      head={"weight": torch.full((2, 32), float("-inf"))})  # fmt: skip
    task.save_pretrained(tmp / "task")
    with pytest.raises(CorruptArtifactError, match="tensor 'weight' holds NaN or Inf"):
        TaskModule.from_pretrained(tmp / "task", verify=False)


# --- names and links that leave the folder --------------------------------------------------------


def _relist(folder: Path, old: str, new: str) -> None:
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["files"][new] = config["files"].pop(old)
    config_path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    "name", ["../pack-outside.safetensors", "/etc/hostname", "tokenizer/../../x", "./embeddings.safetensors"]
)
def test_files_table_cannot_escape(saved, name):
    tmp, body, pack = saved
    _relist(tmp / "pack", "embeddings.safetensors", name)
    with pytest.raises(CorruptArtifactError, match="not a plain relative path inside the artifact folder") as err:
        LanguagePack.from_pretrained(tmp / "pack")
    _one_line(err)


def test_symlink_out_of_the_folder_is_refused_even_with_matching_hash(saved):
    tmp, body, pack = saved
    outside = tmp / "elsewhere.safetensors"
    shutil.move(tmp / "pack" / "embeddings.safetensors", outside)
    (tmp / "pack" / "embeddings.safetensors").symlink_to(outside)
    with pytest.raises(CorruptArtifactError, match="outside the artifact folder"):
        LanguagePack.from_pretrained(tmp / "pack")
    # a link that stays inside is fine
    shutil.move(outside, tmp / "pack" / "tokenizer" / "real.bin")
    (tmp / "pack" / "embeddings.safetensors").unlink()
    (tmp / "pack" / "embeddings.safetensors").symlink_to(Path("tokenizer") / "real.bin")
    _relist(tmp / "pack", "embeddings.safetensors", "embeddings.safetensors")
    config = json.loads((tmp / "pack" / "config.json").read_text())
    config["files"]["tokenizer/real.bin"] = config["files"]["embeddings.safetensors"]
    (tmp / "pack" / "config.json").write_text(json.dumps(config))
    assert LanguagePack.from_pretrained(tmp / "pack").vocab_size == pack.vocab_size


@pytest.mark.parametrize("special", ["fifo", "dev_zero", "dangling"])
def test_pipes_devices_and_broken_links_are_refused_without_hanging(saved, special):
    tmp, body, pack = saved
    target = tmp / "pack" / "tokenizer" / "added_tokens.json"  # a file the tokenizer would open if present
    if special == "fifo":
        os.mkfifo(target)
    elif special == "dev_zero":
        target.symlink_to("/dev/zero")
    else:
        target.symlink_to(tmp / "pack" / "nothing-here")
    with pytest.raises(CorruptArtifactError) as err:
        LanguagePack.from_pretrained(tmp / "pack", verify=False)
    assert "outside the artifact folder" in _one_line(err) or "not a regular file" in str(err.value)


def test_hub_cache_layout_links_into_blobs_are_allowed(saved):
    tmp, body, pack = saved
    repo = tmp / "hub" / "models--user--packs"
    snapshot = repo / "snapshots" / ("a" * 40) / "de"
    (repo / "blobs").mkdir(parents=True)
    for path in sorted((tmp / "pack").rglob("*")):
        if path.is_file():
            blob = repo / "blobs" / file_sha256(path)
            shutil.copyfile(path, blob)
            link = snapshot / path.relative_to(tmp / "pack")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    loaded = LanguagePack.from_pretrained(snapshot)
    assert torch.equal(loaded.word_embeddings, pack.word_embeddings)


# --- no pickle, no remote code ----------------------------------------------------------------------


def test_no_pickle_and_no_remote_code_anywhere_in_the_package():
    offenders = []
    for path in sorted([*REPO.joinpath("embswap").rglob("*.py"), *REPO.joinpath("cli").rglob("*.py")]):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\((?P<args>[^)]*)\)", text):
            if "weights_only=True" not in match["args"]:
                offenders.append(f"{path.name}: torch.load without weights_only=True")
        if re.search(r"^\s*(import pickle|from pickle|import dill|import cloudpickle)", text, re.M):
            offenders.append(f"{path.name}: imports a pickle module")
        if re.search(r"trust_remote_code\s*=\s*True", text):
            offenders.append(f"{path.name}: trust_remote_code=True")
    assert not offenders, offenders


def test_corrupt_tokenizer_is_a_clean_error(saved):
    tmp, body, pack = saved
    (tmp / "pack" / "tokenizer" / "tokenizer.json").write_text(
        '{"model": {"type": "BPE", "vocab": {"a": 99999999999}}}'
    )
    with pytest.raises(CorruptArtifactError, match="the tokenizer does not load") as err:
        LanguagePack.from_pretrained(tmp / "pack", verify=False)
    _one_line(err)


# --- hashes -------------------------------------------------------------------------------------------


def test_hash_is_streamed_and_verify_false_skips_it(saved, monkeypatch):
    tmp, body, pack = saved
    big = tmp / "big.bin"
    big.write_bytes(os.urandom(3 * (1 << 20) + 17))  # several buffers and a partial one
    assert file_sha256(big) == hashlib.sha256(big.read_bytes()).hexdigest()
    calls = []
    real = eio.file_sha256
    monkeypatch.setattr(eio.reading, "file_sha256", lambda path: calls.append(path) or real(path))
    LanguagePack.from_pretrained(tmp / "pack", verify=False)
    assert calls == []
    LanguagePack.from_pretrained(tmp / "pack")
    assert len(calls) == len(json.loads((tmp / "pack" / "config.json").read_text())["files"])


def _cli(*args):
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_verify_command(bert_store):
    root = bert_store.path
    result = _cli("verify", str(root))
    assert result.exit_code == 0 and "embeddings.safetensors" in result.stdout and "ok" in result.stdout
    report = json.loads(_cli("verify", str(root), "--json", "--load").stdout)
    assert report["ok"] and report["failed"] == 0 and report["checked"] >= 4
    assert {row["file"] for row in report["files"]} >= {"body.safetensors", "embeddings.safetensors", "(load)"}
    (root / "packs" / ".embswap-tmp-en-0123abcd").mkdir()  # leftovers are reported, not failures
    report = json.loads(_cli("verify", str(root), "--json").stdout)
    assert report["ok"] and [r["status"] for r in report["files"] if r["status"] == "leftover"] == ["leftover"]

    weights = root / "packs" / "en" / "embeddings.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    result = _cli("verify", str(root))
    assert result.exit_code == 1
    assert (
        result.stderr.count("\n") == 1
        and "1 of" in result.stderr
        and "embeddings.safetensors: SHA-256" in result.stderr
    )
    report = json.loads(_cli("verify", str(root / "packs" / "en"), "--json").stdout)
    assert not report["ok"] and [r["status"] for r in report["files"] if r["file"] == "embeddings.safetensors"] == [
        "mismatch"
    ]
    result = _cli("verify", str(root / "packs"))
    assert result.exit_code == 1 and "neither an embswap artifact" in result.stderr


# --- failed writes and locks, in one process ------------------------------------------------------------


@pytest.mark.parametrize("step", ["locked", "tmp_created", "written", "synced"])
def test_disk_full_at_any_step_leaves_the_old_artifact(saved, monkeypatch, step):
    tmp, body, pack = saved
    before = (tmp / "pack" / "embeddings.safetensors").read_bytes()

    def full(at):
        if at == step:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(eio.atomic, "_fault_hook", full)
    changed = LanguagePack(language="en", tokenizer=pack.tokenizer, word_embeddings=pack.word_embeddings + 1,
                           output_bias=pack.output_bias, body_fingerprint=body.fingerprint)  # fmt: skip
    with pytest.raises(
        ArtifactWriteError, match="No space left on device.*previous artifact there is unchanged"
    ) as err:
        changed.save_pretrained(tmp / "pack")
    _one_line(err)
    monkeypatch.setattr(eio.atomic, "_fault_hook", None)
    assert (tmp / "pack" / "embeddings.safetensors").read_bytes() == before
    assert torch.equal(LanguagePack.from_pretrained(tmp / "pack").word_embeddings, pack.word_embeddings)
    assert not [p.name for p in tmp.iterdir() if p.name.startswith(".embswap-")]


def test_a_held_lock_makes_a_writer_wait_then_fail_clearly(saved):
    tmp, body, pack = saved
    with path_lock(tmp / "pack"):
        with pytest.raises(ArtifactBusyError, match=r"another process is saving .*pack.* within 0.2 s") as err:
            with atomic_folder(tmp / "pack", lock_timeout=0.2):
                pass
        _one_line(err)
    with atomic_folder(tmp / "pack", lock_timeout=0.2) as folder:  # released: the next writer gets in
        shutil.copytree(tmp / "pack", folder, dirs_exist_ok=True)
    assert not (tmp / ".embswap-lock-pack").exists()


def test_leftovers_of_a_longer_name_are_not_mistaken_for_ours(saved):
    """`.embswap-old-de-ch-*` belongs to `de-ch`; saving `de` must neither restore nor delete it."""
    tmp, body, pack = saved
    other = tmp / ".embswap-old-pack-ch-0123abcd"
    shutil.copytree(tmp / "body", other)
    pack.save_pretrained(tmp / "pack2")
    pack.save_pretrained(tmp / "pack")
    assert other.exists() and not (tmp / "pack-ch").exists()


def test_reader_recovers_from_a_crash_between_the_two_renames(saved):
    tmp, body, pack = saved
    os.rename(tmp / "pack", tmp / ".embswap-old-pack-0123abcd")  # the fallback crashed after moving it aside
    (tmp / ".embswap-tmp-pack-89abcdef").mkdir()  # and its unfinished new folder
    loaded = LanguagePack.from_pretrained(tmp / "pack")
    assert torch.equal(loaded.word_embeddings, pack.word_embeddings)
    assert sorted(p.name for p in tmp.iterdir()) == ["body", "pack"]


def test_a_reader_waits_out_a_save_that_has_the_path_moved_aside(saved):
    """The two-rename fallback leaves the path missing for a moment, inside the writer's lock."""
    tmp, body, pack = saved
    aside = tmp / ".embswap-old-pack-0123abcd"
    locked, release = threading.Event(), threading.Event()

    def writer():
        with path_lock(tmp / "pack"):
            os.rename(tmp / "pack", aside)
            locked.set()
            release.wait(10)
            os.rename(aside, tmp / "pack")

    thread = threading.Thread(target=writer)
    thread.start()
    locked.wait(10)
    threading.Timer(0.3, release.set).start()
    loaded = LanguagePack.from_pretrained(tmp / "pack")  # neither "not found" nor a recovery under the writer
    thread.join()
    assert torch.equal(loaded.word_embeddings, pack.word_embeddings)


def test_read_consistently_repeats_a_read_that_overlapped_a_swap(tmp_path):
    folder = tmp_path / "a"
    folder.mkdir()
    calls = []

    def read():
        calls.append(1)
        if len(calls) == 1:  # a save swaps the folder in the middle of the first read
            os.rename(folder, tmp_path / "gone")
            folder.mkdir()
            raise CorruptArtifactError("mixed read")
        return "whole"

    assert read_consistently(folder, read) == "whole" and len(calls) == 2
    with pytest.raises(CorruptArtifactError, match="really corrupt"):
        read_consistently(folder, lambda: (_ for _ in ()).throw(CorruptArtifactError("really corrupt")))


def test_overwriting_a_store_pack_swaps_it_whole(bert_store):
    pack = bert_store.pack("en")
    changed = LanguagePack(language="de", tokenizer=pack.tokenizer, word_embeddings=pack.word_embeddings * 2,
                           output_bias=pack.output_bias, body_fingerprint=pack.body_fingerprint)  # fmt: skip
    bert_store.save_pack(pack, "de")
    bert_store.save_pack(changed)
    assert torch.equal(Store(bert_store.path).pack("de").word_embeddings, changed.word_embeddings)
    assert sorted(p.name for p in (bert_store.path / "packs").iterdir()) == ["de", "en"]
