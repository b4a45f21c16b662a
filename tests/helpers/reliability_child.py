"""A fork server for the crash and concurrency tests: imports embswap once, forks a worker per job.

Starting Python with torch and transformers takes seconds; forking a process that has imported
them (and has run no torch op, so no thread pool exists yet) takes milliseconds. That is what
lets the tests kill hundreds of saves. Protocol: one JSON object per line on stdin, one reply per
line on stdout.

    {"op": "spawn", "job": NAME, "args": {...}}  -> {"pid": PID}
    {"op": "wait", "pid": PID}                    -> {"pid": PID, "exit": CODE | null, "signal": SIG | null}
    {"op": "warm", "path": PACK}                  -> {} (loads a pack once so forks skip lazy imports)
    {"op": "quit"}

Each job runs in its own forked process (stdout/stderr to ``args["log"]`` when given) and writes
what it found as JSON to ``args["out"]`` when given.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import embswap.io as eio  # noqa: E402
from embswap import LanguagePack  # noqa: E402
from embswap.errors import EmbswapError  # noqa: E402


def _tag(pack: LanguagePack) -> dict:
    """What identifies a loaded pack: its provenance tag and a hash of its matrix."""
    import hashlib

    return {
        "tag": pack.provenance.get("tag"),
        "sha": hashlib.sha256(eio.tensor_bytes(pack.word_embeddings)).hexdigest(),
    }


def _set_mode(args: dict) -> None:
    eio.atomic._use_rename_exchange = not args.get("fallback", False)


def job_save_loop(args: dict) -> None:
    """Save the source packs to the target in turn, forever (the test kills this process)."""
    _set_mode(args)
    packs = [LanguagePack.from_pretrained(p, verify=False) for p in args["sources"]]
    Path(args["ready"]).touch()
    i = 0
    while True:
        packs[i % len(packs)].save_pretrained(args["target"])
        i += 1


def job_save_once(args: dict) -> None:
    """Save once, killing this process with SIGKILL when the save reaches ``fault`` (its n-th time)."""
    _set_mode(args)
    pack = LanguagePack.from_pretrained(args["source"], verify=False)
    remaining = [args.get("hit", 1)]

    def hook(step: str) -> None:
        if step == args["fault"]:
            remaining[0] -= 1
            if remaining[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    eio.atomic._fault_hook = hook
    pack.save_pretrained(args["target"])


def job_save_n(args: dict) -> dict:
    """Save ``n`` times (a concurrent writer); errors are recorded, not raised."""
    _set_mode(args)
    pack = LanguagePack.from_pretrained(args["source"], verify=False)
    if args.get("hold_s"):  # stay inside the save (holding the lock) for a while
        eio.atomic._fault_hook = lambda step: time.sleep(args["hold_s"]) if step == "written" else None
    saved, errors = 0, []
    start = time.perf_counter()
    for _ in range(args["n"]):
        try:
            with eio.atomic_folder(args["target"], lock_timeout=args.get("lock_timeout")) as tmp:
                fields = pack._write(tmp)
                eio.write_config(tmp, pack.kind, fields)
            saved += 1
        except EmbswapError as err:
            errors.append({"type": type(err).__name__, "message": str(err)})
    return {"saved": saved, "errors": errors, "seconds": time.perf_counter() - start}


def job_read_until(args: dict) -> dict:
    """Load the target again and again until ``stop`` exists (and at least ``min`` times)."""
    loads, errors = [], []
    while len(loads) + len(errors) < args.get("min", 1) or not Path(args["stop"]).exists():
        try:
            loads.append(_tag(LanguagePack.from_pretrained(args["target"])))
        except EmbswapError as err:
            errors.append({"type": type(err).__name__, "message": str(err)})
    return {"loads": loads, "errors": errors}


def job_save_limited(args: dict) -> dict:
    """Save under RLIMIT_FSIZE (files may not grow past ``limit`` bytes): a disk that fills up."""
    pack = LanguagePack.from_pretrained(args["source"], verify=False)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (args["limit"], hard))
    try:
        pack.save_pretrained(args["target"])
    except EmbswapError as err:
        return {"error": type(err).__name__, "message": str(err)}
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # so the result can be written
    return {"error": None}


JOBS = {name[4:]: fn for name, fn in globals().items() if name.startswith("job_")}


def _run_job(job: str, args: dict) -> None:
    """In the forked process: redirect output, run, write the result, exit without cleanup."""
    code = 0
    try:
        if args.get("log"):
            fd = os.open(args["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
        result = JOBS[job](args)
        if args.get("out"):
            Path(args["out"]).write_text(json.dumps(result))
    except BaseException as err:  # noqa: BLE001 - report anything, the test decides
        code = 1
        if args.get("out"):
            Path(args["out"]).write_text(json.dumps({"crash": f"{type(err).__name__}: {err}"}))
    finally:
        os._exit(code)


def main() -> None:
    import torch

    torch.set_num_threads(1)  # no thread pool may exist when we fork
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        if request["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                _run_job(request["job"], request["args"])
            reply = {"pid": pid}
        elif request["op"] == "warm":
            LanguagePack.from_pretrained(request["path"])
            reply = {}
        elif request["op"] == "wait":
            _, status = os.waitpid(request["pid"], 0)
            reply = {
                "pid": request["pid"],
                "exit": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            }
        else:
            reply = {"error": f"unknown op {request['op']!r}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
