"""Crashes, full disks and concurrent processes never lose or corrupt an artifact.

Processes come from a fork server (``reliability_child.py``) so each costs milliseconds, not the
seconds of importing torch. Every check loads the target with its hashes verified and compares
its matrix bit for bit with what was saved.
"""

import json
import time

import pytest

from embswap import LanguagePack, split_model
from tests.helpers import reliability_kit as kit
from tests.helpers.models import make_mlm

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
    return kit.holds(target, world["ids"])


@pytest.mark.parametrize("mode", list(MODES))
def test_sigkill_at_every_step_of_a_save(world, mode):
    counts = kit.step_sweep(world["server"], world["sources"], world["root"] / "store", fallback=MODES[mode])
    assert counts["crash_points"] == counts["intact"] == len(kit.FALLBACK_STEPS if MODES[mode] else kit.SAVE_STEPS)


def test_sigkill_during_the_first_save_leaves_nothing_or_everything(world):
    counts = kit.step_sweep(world["server"], world["sources"], world["root"] / "store", fallback=False, first_save=True)
    assert counts["intact"] == len(kit.SAVE_STEPS)  # before the swap: nothing there, and a clean "not found"


def _random_kills(world, mode: str, kills: int, seed: int) -> None:
    target = world["root"] / "store" / "packs" / f"random-{mode}-{seed}"
    counts = kit.random_kill_campaign(world["server"], world["sources"], target, kills, fallback=MODES[mode], seed=seed)
    print(f"{mode}: {dict(counts)}")
    assert counts["kills"] == kills and counts["mid_save"] >= 1  # some kills really landed inside a save


@pytest.mark.parametrize("mode", list(MODES))
def test_sigkill_at_random_moments_of_saves(world, mode):
    _random_kills(world, mode, kills=12, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_sigkill_at_random_moments_of_saves_long(world, mode):
    _random_kills(world, mode, kills=150, seed=int(time.time()))


def test_disk_full_fails_clearly_and_keeps_the_previous_artifact(world):
    target = _fresh_target(world, "full-disk")
    for limit in (0, 1000, 100_000):  # files may not grow past this many bytes; the weights file (530 KB) fails
        status, result = world["server"].run(
            "save_limited", source=str(world["sources"]["B"]), target=str(target), limit=limit
        )
        assert status["exit"] == 0, result
        assert result["error"] == "ArtifactWriteError", result
        assert "File too large" in result["message"] and "previous artifact there is unchanged" in result["message"]
        assert "\n" not in result["message"]
        assert _holds(world, target) == "A"
        assert kit.leftovers(target) == []


@pytest.mark.parametrize("mode", list(MODES))
def test_two_writers_and_two_readers(world, mode):
    counts = kit.concurrency_round(world["server"], world["sources"], world["root"] / "store" / "packs" / f"concurrent-{mode}",
                                   saves=12, readers=2, fallback=MODES[mode])  # fmt: skip
    print(f"{mode}: {dict(counts)}")
    assert counts["saves"] == 24 and counts["reads"] >= 10 and counts["whole_reads"] == counts["reads"]


def test_a_writer_that_cannot_get_the_lock_gives_a_clear_error(world):
    server, target = world["server"], _fresh_target(world, "busy")
    holder, holder_out = server.spawn("save_n", source=str(world["sources"]["B"]), target=str(target), n=1, hold_s=1.5)
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
