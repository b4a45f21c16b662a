"""Crashes, full disks and concurrent processes never lose or corrupt an artifact.

Processes come from a fork server (``reliability_child.py``) so each costs milliseconds, not the
seconds of importing torch. Every check loads the target with its hashes verified and compares
its matrix bit for bit with what was saved.
"""

import json
import signal
import time

import pytest

import reliability_kit as kit
from conftest import make_mlm
from embswap import LanguagePack, split_model

# Steps of a save (embswap.io.atomic_folder) and whether the new artifact is in place after each.
STEPS = [("locked", False), ("tmp_created", False), ("written", False), ("synced", False), ("swapped", True), ("cleaned", True)]
MODES = {"exchange": False, "fallback": True}  # fallback: the two renames systems without RENAME_EXCHANGE get


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The fork server, and packs A and B (same tokenizer, different 4,000-row matrices) on disk."""
    root = tmp_path_factory.mktemp("processes")
    model, tokenizer = make_mlm("bert")
    _, pack = split_model(model, tokenizer, "en")
    sources = {}
    for seed, tag in enumerate("AB"):
        sources[tag] = root / f"source-{tag}"
        kit.tagged_pack(pack, tag, rows=4000, seed=seed).save_pretrained(sources[tag])
    identities = {tag: kit.pack_identity(LanguagePack.from_pretrained(path)) for tag, path in sources.items()}
    work = root / "work"
    work.mkdir()
    server = kit.ForkServer(work)
    server.warm(sources["A"])
    yield {"root": root, "sources": sources, "ids": identities, "server": server}
    server.close()


def _fresh_target(world, name: str, tag: str | None = "A"):
    target = world["root"] / "store" / "packs" / name
    if tag is not None:
        LanguagePack.from_pretrained(world["sources"][tag]).save_pretrained(target)
    return target


def _holds(world, target) -> str:
    found = kit.pack_identity(LanguagePack.from_pretrained(target))
    tags = [tag for tag, identity in world["ids"].items() if identity == found]
    assert tags, f"{target} holds neither A nor B"
    return tags[0]


@pytest.mark.parametrize("mode", list(MODES))
def test_sigkill_at_every_step_of_a_save(world, mode):
    steps = STEPS + ([("moved_aside", False)] if mode == "fallback" else [])
    for step, new_in_place in steps:
        target = _fresh_target(world, f"step-{mode}-{step}")
        status, _ = world["server"].run("save_once", source=str(world["sources"]["B"]), target=str(target),
                                        fault=step, fallback=MODES[mode])  # fmt: skip
        assert status["signal"] == signal.SIGKILL, (step, status)
        assert _holds(world, target) == ("B" if new_in_place else "A"), step
        # the next save cleans what the killed one left, and works
        LanguagePack.from_pretrained(world["sources"]["A"]).save_pretrained(target)
        assert _holds(world, target) == "A" and kit.leftovers(target) == []


def test_sigkill_during_the_first_save_leaves_nothing_or_everything(world):
    for step, new_in_place in STEPS:
        target = _fresh_target(world, f"first-{step}", tag=None)
        status, _ = world["server"].run("save_once", source=str(world["sources"]["B"]), target=str(target), fault=step)
        assert status["signal"] == signal.SIGKILL
        if new_in_place:
            assert _holds(world, target) == "B"
        else:
            assert not target.exists()
            with pytest.raises(Exception) as err:
                LanguagePack.from_pretrained(target)
            assert type(err.value).__name__ == "ArtifactNotFoundError"


@pytest.mark.parametrize("mode", list(MODES))
def test_sigkill_at_random_moments_of_saves(world, mode):
    target = _fresh_target(world, f"random-{mode}")
    source = LanguagePack.from_pretrained(world["sources"]["A"])
    start = time.perf_counter()
    source.save_pretrained(target)
    one_save = time.perf_counter() - start
    counts = kit.random_kill_campaign(world["server"], world["sources"], target, kills=20, fallback=MODES[mode],
                                      window_s=3 * one_save, seed=1 if mode == "exchange" else 2)  # fmt: skip
    print(f"{mode}: one save {one_save * 1000:.0f} ms; {dict(counts)}")
    assert counts["kills"] == 20 and counts["mid_save"] >= 1  # some kills really landed inside a save


def test_disk_full_fails_clearly_and_keeps_the_previous_artifact(world):
    target = _fresh_target(world, "full-disk")
    for limit in (0, 1000, 100_000):  # files may not grow past this many bytes; the weights file (530 KB) fails
        status, result = world["server"].run("save_limited", source=str(world["sources"]["B"]), target=str(target), limit=limit)
        assert status["exit"] == 0, result
        assert result["error"] == "ArtifactWriteError", result
        assert "File too large" in result["message"] and "previous artifact there is unchanged" in result["message"]
        assert "\n" not in result["message"]
        assert _holds(world, target) == "A"
        assert kit.leftovers(target) == []


@pytest.mark.parametrize("mode", list(MODES))
def test_two_writers_and_a_reader(world, mode):
    server, target = world["server"], _fresh_target(world, f"concurrent-{mode}")
    stop = world["root"] / "work" / f"stop-{mode}"
    reader, reader_out = server.spawn("read_until", target=str(target), stop=str(stop), min=5)
    writers = [server.spawn("save_n", source=str(world["sources"][tag]), target=str(target), n=8, fallback=MODES[mode])
               for tag in "AB"]  # fmt: skip
    for pid, out in writers:
        assert server.wait(pid)["exit"] == 0
        result = json.loads(out.read_text())
        assert result == {"saved": 8, "errors": []}  # the second writer waited for the lock
    stop.touch()
    assert server.wait(reader)["exit"] == 0
    read = json.loads(reader_out.read_text())
    assert read["errors"] == [] and len(read["loads"]) >= 5
    assert all(load in world["ids"].values() for load in read["loads"])
    print(f"{mode}: {len(read['loads'])} reads during 16 saves, all whole")
    assert _holds(world, target) in "AB" and kit.leftovers(target) == []


def test_a_writer_that_cannot_get_the_lock_gives_a_clear_error(world):
    server, target = world["server"], _fresh_target(world, "busy")
    holder, holder_out = server.spawn("save_n", source=str(world["sources"]["B"]), target=str(target), n=1, hold_s=3)
    deadline = time.monotonic() + 30
    while not any(name.startswith(".embswap-tmp-") for name in kit.leftovers(target)):  # the holder is inside its save
        assert time.monotonic() < deadline
        time.sleep(0.01)
    status, result = server.run("save_n", source=str(world["sources"]["A"]), target=str(target), n=1, lock_timeout=0.3)
    assert status["exit"] == 0 and result["saved"] == 0
    (error,) = result["errors"]
    assert error["type"] == "ArtifactBusyError" and "another process is saving" in error["message"]
    assert "\n" not in error["message"]
    assert server.wait(holder)["exit"] == 0 and json.loads(holder_out.read_text())["saved"] == 1
    assert _holds(world, target) == "B"
