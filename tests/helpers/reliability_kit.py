"""Shared by the reliability tests and ``benchmarks/reliability.py``: sample artifacts, random
damage (hypothesis), a time bound per case, case counters, and a client of the fork server in
``reliability_child.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embswap import Body, LanguagePack, Store, TaskModule, split_model
from embswap.errors import ArtifactNotFoundError, EmbswapError
from embswap.io import load_tensors, read_config
from embswap.verify import verify

HERE = Path(__file__).resolve().parent

# Counts of cases run and of how each ended, by fuzz target; the benchmark reports them.
STATS: Counter = Counter()
SLOWEST = {"ms": 0, "case": ""}
_current_damage: list[str] = []


# --- sample artifacts ---------------------------------------------------------------------------


@dataclass
class Samples:
    root: Path
    body: Path
    pack: Path
    task: Path
    store: Path


def make_samples(root: Path) -> Samples:
    """A tiny BERT body, its pack (with output bias), a task module with every optional file, a store."""
    from tests.helpers.models import make_mlm

    model, tokenizer = make_mlm("bert")
    body, pack = split_model(model, tokenizer, "en")
    torch.manual_seed(1)
    some = sorted(body.tensors)[:2]
    task = TaskModule(
        task="classification",
        labels=["a", "b", "c"],
        head={"weight": torch.randn(3, 32), "bias": torch.zeros(3)},
        body_fingerprint=body.fingerprint,
        body_delta={name: body.tensors[name] + 0.01 for name in some},
        special_rows={0: torch.randn(32), 2: torch.randn(32)},
    )
    body.save_pretrained(root / "body")
    pack.save_pretrained(root / "pack")
    task.save_pretrained(root / "task")
    store = Store(root / "store")
    store.save_body(body)
    store.save_pack(pack)
    store.save_pack(pack, "de")
    store.save_task("genre", task)
    return Samples(root, root / "body", root / "pack", root / "task", root / "store")


def tagged_pack(source: LanguagePack, tag: str, rows: int, seed: int) -> LanguagePack:
    """A copy of ``source`` with its own random matrix (``rows`` rows) and ``tag`` in its provenance."""
    generator = torch.Generator().manual_seed(seed)
    hidden = source.hidden_size
    return LanguagePack(
        language=source.language,
        tokenizer=source.tokenizer,
        word_embeddings=torch.randn(rows, hidden, generator=generator),
        output_bias=torch.randn(rows, generator=generator),
        body_fingerprint=source.body_fingerprint,
        provenance={"tag": tag},
    )


def pack_identity(pack: LanguagePack) -> dict:
    import hashlib

    from embswap.io import tensor_bytes

    return {"tag": pack.provenance.get("tag"), "sha": hashlib.sha256(tensor_bytes(pack.word_embeddings)).hexdigest()}


def leftovers(target: Path) -> list[str]:
    """Names beside ``target`` that saves of it left (temporary folders, lock files)."""
    return sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".embswap-") and target.name in p.name)


# --- one case: a time bound and a clean outcome -----------------------------------------------


class CaseTimeout(BaseException):
    """A case ran past its time bound (a BaseException so no loader's except clause swallows it)."""


@contextlib.contextmanager
def time_bound(seconds: float):
    """Interrupt the case after ``seconds`` (SIGALRM, main thread only; elsewhere no bound)."""

    def expire(signum, frame):
        raise CaseTimeout(f"case exceeded {seconds} s")

    try:
        previous = signal.signal(signal.SIGALRM, expire)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(action, target: str, seconds: float = 20.0) -> str:
    """Run ``action``: "ok", or the name of the EmbswapError it raised with a one-line message.

    Any other exception propagates (the test fails on it), as does CaseTimeout.
    """
    STATS[f"{target}:cases"] += 1
    start = time.perf_counter()
    try:
        with time_bound(seconds):
            action()
        result = "ok"
    except EmbswapError as err:
        message = str(err)
        assert message and "\n" not in message and "\r" not in message, f"not one line: {message!r}"
        result = type(err).__name__
    elapsed_ms = int((time.perf_counter() - start) * 1000)
    STATS[f"{target}:{result}"] += 1
    STATS["slowest_case_ms"] = max(STATS["slowest_case_ms"], elapsed_ms)
    if elapsed_ms >= SLOWEST["ms"]:
        SLOWEST.update(ms=elapsed_ms, case=f"{target}: {'; '.join(_current_damage)} -> {result}")
    return result


# --- random damage ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)

# Values a config field could hold that have fooled loaders before: wrong types, escapes, huge sizes.
nasty_values = st.sampled_from(
    [None, True, 0, -1, 10**12, 2**63, 1.5, "", "x" * 300, [], {}, [1, 2], {"a": 1}, "../escape", "/etc/passwd",
     "a\nb", "tokenizer/../../x", "classification", "full", "bert", "mlm", "none"]
)  # fmt: skip

_ESCAPING_NAMES = [
    "../outside.bin",
    "/etc/hostname",
    "tokenizer/../../outside.bin",
    "./config.json",
    "a\x00b",
    "a\nb",
    "",
]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def damage(folder: Path, data) -> str:
    """Apply one random kind of damage to an artifact folder (or a store); returns what was done."""
    files = _files(folder)
    if not files:
        return "nothing left to damage"
    kind = data.draw(
        st.sampled_from(
            ["truncate", "bitflip", "random_bytes", "config_field", "config_random", "files_table", "delete",
             "extra_file", "symlink_out", "special_file", "config_text"]
        ),
        label="damage",
    )  # fmt: skip
    configs = [p for p in files if p.name == "config.json"]
    if kind.startswith(("config", "files")) and configs:
        files = configs
    elif kind.startswith(("config", "files")):
        kind = "random_bytes"
    path = data.draw(st.sampled_from(files), label="file")
    if kind == "truncate":
        raw = path.read_bytes()
        cut = data.draw(st.integers(0, max(len(raw) - 1, 0)), label="cut")
        path.write_bytes(raw[:cut])
    elif kind == "bitflip":
        raw = bytearray(path.read_bytes())
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            if not raw:
                break
            # the header of a safetensors file is where parsers are most exposed: bias flips toward it
            limit = data.draw(st.sampled_from([min(len(raw), 256), len(raw)]), label="region")
            at = data.draw(st.integers(0, limit - 1), label="at")
            raw[at] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        path.write_bytes(bytes(raw))
    elif kind == "random_bytes":
        path.write_bytes(data.draw(st.binary(max_size=2048), label="bytes"))
    elif kind == "config_text":
        path.write_text(data.draw(st.text(max_size=200), label="text"), encoding="utf-8")
    elif kind == "config_random":
        path.write_text(json.dumps(data.draw(json_values, label="json")), encoding="utf-8")
    elif kind in ("config_field", "files_table"):
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:  # already damaged by an earlier step
            config = {}
        if not isinstance(config, dict):
            config = {}
        if kind == "files_table" and isinstance(config.get("files"), dict) and config["files"]:
            name = data.draw(st.sampled_from(sorted(config["files"])), label="entry")
            digest = config["files"].pop(name)
            if data.draw(st.booleans(), label="rename"):
                config["files"][data.draw(st.sampled_from(_ESCAPING_NAMES), label="name")] = digest
            else:
                config["files"][name] = data.draw(
                    st.sampled_from(["0" * 64, "", 7, None, str(digest).upper() + "\n"]), label="hash"
                )
        else:
            key = data.draw(st.sampled_from(sorted(config) + ["new_key"]), label="key")
            if data.draw(st.booleans(), label="delete") and key in config:
                del config[key]
            else:
                config[key] = data.draw(nasty_values | json_values, label="value")
        path.write_text(json.dumps(config), encoding="utf-8")
    elif kind == "delete":
        path.unlink()
    elif kind == "extra_file":
        (
            path.parent / data.draw(st.sampled_from(["x.bin", "extra.safetensors", "README.md"]), label="extra")
        ).write_bytes(b"x")
    elif kind == "symlink_out":
        outside = data.draw(
            st.sampled_from(["/dev/zero", "/etc/hostname", str(folder.parent / "outside.bin")]), label="to"
        )
        path.unlink()
        path.symlink_to(outside)
    elif kind == "special_file":
        path.unlink()
        os.mkfifo(path)  # opening a pipe with no writer blocks forever: a loader must refuse it first
    return f"{kind} {path.relative_to(folder)}"


# --- fuzz targets ---------------------------------------------------------------------------------


def _load_store(path: Path, verify_hashes: bool) -> None:
    store = Store(path)
    store.inventory()
    for language in store.languages:
        LanguagePack.from_pretrained(store.pack_path(language), verify=verify_hashes)
    for name in store.task_names:
        TaskModule.from_pretrained(store.task_path(name), verify=verify_hashes)
    Body.from_pretrained(store.body_path, verify=verify_hashes)


LOADERS = {
    "body": lambda p, v: Body.from_pretrained(p, verify=v),
    "pack": lambda p, v: LanguagePack.from_pretrained(p, verify=v),
    "task": lambda p, v: TaskModule.from_pretrained(p, verify=v),
    "store": _load_store,
}


def fuzz_artifact(
    samples: Samples, target: str, max_examples: int, *, derandomize: bool, seconds: float = 20.0
) -> None:
    """Damaged copies of one sample artifact (or the store): every load ends ok or in an EmbswapError."""
    source = getattr(samples, target)
    load = LOADERS[target]

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=st.data())
    def case(data):
        with tempfile.TemporaryDirectory(dir=samples.root) as scratch:
            folder = Path(scratch) / target
            shutil.copytree(source, folder, symlinks=True)
            _current_damage.clear()
            for _ in range(data.draw(st.integers(1, 2), label="damages")):
                _current_damage.append(damage(folder, data))
            outcome(lambda: load(folder, True), target, seconds)
            outcome(lambda: load(folder, False), target, seconds)
            if target == "store":
                outcome(lambda: verify(folder, load=True), "verify", seconds)

    case()


def fuzz_read_config(samples: Samples, max_examples: int, *, derandomize: bool) -> None:
    """Random JSON (objects near the real config, and anything at all) as a pack's config.json."""
    source = samples.pack
    real = json.loads((source / "config.json").read_text())

    @st.composite
    def near_real(draw):  # the real config with one to three fields removed or replaced
        config = dict(real)
        for key in draw(st.lists(st.sampled_from(sorted(real) + ["new_key"]), min_size=1, max_size=3, unique=True)):
            if draw(st.booleans()):
                config.pop(key, None)
            else:
                config[key] = draw(nasty_values | json_values)
        return config

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(config=near_real() | json_values, verify_hashes=st.booleans())
    def case(config, verify_hashes):
        with tempfile.TemporaryDirectory(dir=samples.root) as scratch:
            folder = Path(scratch) / "pack"
            shutil.copytree(source, folder)
            (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
            _current_damage[:] = [f"config.json = {json.dumps(config)[:120]}"]
            outcome(lambda: read_config(folder, "language_pack", verify=verify_hashes), "read_config")
            outcome(lambda: LanguagePack.from_pretrained(folder, verify=verify_hashes), "read_config")

    case()


_DTYPES = ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "X9", 7]


@st.composite
def safetensors_files(draw) -> bytes:
    """Hand-made safetensors files: plausible headers with lying shapes, offsets and lengths."""
    entries, offset = {}, 0
    for i in range(draw(st.integers(0, 3))):
        shape = draw(st.lists(st.sampled_from([0, 1, 3, 32, 10**6, 10**12]) | st.integers(-2, 40), max_size=3))
        size = draw(st.sampled_from([0, 4, 12, 128]) | st.integers(0, 10**13))
        begin = draw(st.sampled_from([offset, 0, offset + 1]) | st.integers(-5, 10**13))
        entries[f"t{i}"] = {
            "dtype": draw(st.sampled_from(_DTYPES)),
            "shape": shape,
            "data_offsets": [begin, begin + size],
        }
        offset = begin + size
    if draw(st.booleans()):
        entries["__metadata__"] = draw(st.sampled_from([{"format": "pt"}, {"a": 1}, []]))
    header = json.dumps(entries).encode()
    claimed = draw(st.sampled_from([len(header), len(header) + 1, 0, 10**9, 2**63]) | st.integers(0, 2**64 - 1))
    payload = draw(st.binary(max_size=512))
    return claimed.to_bytes(8, "little") + header + payload


def fuzz_safetensors(samples: Samples, max_examples: int, *, derandomize: bool) -> None:
    """load_tensors on hand-made headers (a 10^12-element claim included) and on random bytes."""
    expected = st.sampled_from([None, {"t0": (3, 32)}, {"t0": (None,)}, {"missing": (1,)}])

    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(raw=safetensors_files() | st.binary(max_size=256), shapes=expected)
    def case(raw, shapes):
        path = samples.root / f"fuzz-{os.getpid()}.safetensors"
        path.write_bytes(raw)
        outcome(lambda: load_tensors(path, expected_shapes=shapes, check_finite_values=True), "safetensors")

    case()


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the fork server ------------------------------------------------------------------------------


class ForkServer:
    """Client of ``reliability_child.py``: spawn jobs as forked processes, wait for them, kill them."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "reliability_child.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self._jobs = 0

    def _ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the fork server died")
        return json.loads(line)

    def spawn(self, job: str, **args) -> tuple[int, Path]:
        """Start a job; returns its pid and the path its JSON result will be written to."""
        self._jobs += 1
        out = self.workdir / f"job-{self._jobs}.json"
        args = {"out": str(out), "log": str(self.workdir / f"job-{self._jobs}.log"), **args}
        return self._ask({"op": "spawn", "job": job, "args": args})["pid"], out

    def warm(self, pack: Path) -> None:
        self._ask({"op": "warm", "path": str(pack)})

    def wait(self, pid: int) -> dict:
        return self._ask({"op": "wait", "pid": pid})

    def run(self, job: str, **args) -> tuple[dict, object]:
        """Spawn, wait; returns (exit status, the job's JSON result or None)."""
        pid, out = self.spawn(job, **args)
        status = self.wait(pid)
        return status, json.loads(out.read_text()) if out.exists() else None

    def kill(self, pid: int) -> dict:
        os.kill(pid, signal.SIGKILL)
        return self.wait(pid)

    def close(self) -> None:
        """Stop the server (its jobs are all waited for; it holds no state worth a clean exit)."""
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.002)


def holds(target: Path, expected: dict[str, dict]) -> str:
    """Which of the expected packs ``target`` loads as (hashes verified), bit for bit; fails on anything else."""
    found = pack_identity(LanguagePack.from_pretrained(target))
    tags = [tag for tag, identity in expected.items() if identity == found]
    assert tags, f"{target} holds none of {sorted(expected)}: {found}"
    return tags[0]


# Steps of a save (embswap.io.atomic_folder) and whether the new artifact is in place after each.
SAVE_STEPS = [("locked", False), ("tmp_created", False), ("written", False), ("synced", False), ("swapped", True),
              ("cleaned", True)]  # fmt: skip
FALLBACK_STEPS = SAVE_STEPS + [("moved_aside", False)]  # between the two renames of the fallback


def step_sweep(
    server: ForkServer, sources: dict[str, Path], root: Path, *, fallback: bool, first_save: bool = False
) -> Counter:
    """SIGKILL a save of B over A at each step of ``atomic_folder``; the path must hold exactly A or B as
    the step implies (nothing, for a first save killed before its swap), and the next save must clean up."""
    expected = {tag: pack_identity(LanguagePack.from_pretrained(path)) for tag, path in sources.items()}
    counts: Counter = Counter()
    mode = "fallback" if fallback else "exchange"
    for step, new_in_place in FALLBACK_STEPS if fallback else SAVE_STEPS:
        target = root / f"step-{mode}-{'first' if first_save else 'over'}-{step}"
        if not first_save:
            LanguagePack.from_pretrained(sources["A"]).save_pretrained(target)
        status, _ = server.run("save_once", source=str(sources["B"]), target=str(target), fault=step, fallback=fallback)
        assert status["signal"] == signal.SIGKILL, (step, status)
        counts["crash_points"] += 1
        if new_in_place:
            assert holds(target, expected) == "B", step
        elif first_save:
            assert not target.exists(), step
            try:
                LanguagePack.from_pretrained(target)
                raise AssertionError(f"{target} loaded although its first save died at {step}")
            except ArtifactNotFoundError:
                pass
        else:
            assert holds(target, expected) == "A", step
        LanguagePack.from_pretrained(sources["A"]).save_pretrained(target)
        assert holds(target, expected) == "A" and leftovers(target) == [], step
        counts["intact"] += 1
    return counts


def random_kill_campaign(server: ForkServer, sources: dict[str, Path], target: Path, kills: int, *,
                         fallback: bool, seed: int) -> Counter:  # fmt: skip
    """Kill a process that saves A and B to ``target`` in turn, after random delays, ``kills`` times.

    The delay is uniform over three save durations (measured in a forked process, as the victim
    saves). After every kill the path must load (hashes verified) as exactly A or exactly B;
    leftovers may only be ``.embswap-*`` siblings. Returns counts: kills, what the path held,
    kills that hit mid-save, the save duration.
    """
    expected = {tag: pack_identity(LanguagePack.from_pretrained(path)) for tag, path in sources.items()}
    LanguagePack.from_pretrained(sources["A"]).save_pretrained(target)
    server.run("save_n", source=str(sources["B"]), target=str(target), n=4, fallback=fallback)  # warm the page cache
    _, result = server.run("save_n", source=str(sources["A"]), target=str(target), n=4, fallback=fallback)
    window_s = 3 * result["seconds"] / 4
    rng = random.Random(seed)
    counts: Counter = Counter({"one_save_ms": round(result["seconds"] / 4 * 1000)})
    current = holds(target, expected)
    for i in range(kills):
        ready = server.workdir / f"ready-{seed}-{i}"
        order = sorted(sources, key=lambda tag: tag == current)  # first save the one not in place yet
        pid, _ = server.spawn("save_loop", sources=[str(sources[tag]) for tag in order], target=str(target),
                              ready=str(ready), fallback=fallback)  # fmt: skip
        wait_for(ready)
        time.sleep(rng.uniform(0, window_s))
        status = server.kill(pid)
        assert status["signal"] == signal.SIGKILL, status
        counts["kills"] += 1
        if any(name.startswith(".embswap-tmp-") or name.startswith(".embswap-old-") for name in leftovers(target)):
            counts["mid_save"] += 1
        current = holds(target, expected)
        counts[f"holds_{current}"] += 1
        stray = [n for n in leftovers(target) if not n.startswith((".embswap-tmp-", ".embswap-old-", ".embswap-lock-"))]
        assert not stray, stray
    return counts


def concurrency_round(server: ForkServer, sources: dict[str, Path], target: Path, *, saves: int, readers: int,
                      fallback: bool) -> Counter:  # fmt: skip
    """Two processes save A and B to one path ``saves`` times each while ``readers`` processes load it.

    Both writers must finish every save (the second waits for the lock), every read must be
    exactly A or exactly B, and the path must end whole with no leftovers.
    """
    expected = {tag: pack_identity(LanguagePack.from_pretrained(path)) for tag, path in sources.items()}
    LanguagePack.from_pretrained(sources["A"]).save_pretrained(target)
    stop = server.workdir / f"stop-{target.name}-{time.monotonic_ns()}"
    reading = [server.spawn("read_until", target=str(target), stop=str(stop), min=5) for _ in range(readers)]
    writing = [server.spawn("save_n", source=str(sources[tag]), target=str(target), n=saves, fallback=fallback)
               for tag in sources]  # fmt: skip
    counts: Counter = Counter()
    for pid, out in writing:
        assert server.wait(pid)["exit"] == 0
        result = json.loads(out.read_text())
        assert result["saved"] == saves and result["errors"] == [], result  # the second writer waited for the lock
        counts["saves"] += result["saved"]
    stop.touch()
    for pid, out in reading:
        assert server.wait(pid)["exit"] == 0
        result = json.loads(out.read_text())
        assert "crash" not in result and result["errors"] == [], result
        counts["reads"] += len(result["loads"])
        counts["whole_reads"] += sum(load in expected.values() for load in result["loads"])
    holds(target, expected)
    assert leftovers(target) == []
    return counts
