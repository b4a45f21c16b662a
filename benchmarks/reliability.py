"""The reliability campaign behind the README's figures: a long fuzz of every loader, SIGKILLs at every
step of a save and at random moments, full disks, concurrent writers and readers.

    python benchmarks/reliability.py                # ~11 min on 2 CPU cores
    python benchmarks/reliability.py --scale 0.1    # a quick look

Writes benchmarks/results/reliability.json. Any failure stops the run with the failing case (the
same assertions as the tests in tests/reliability/test_reliability_*.py, which share this code).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests package shares its kit with this benchmark
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from embswap import LanguagePack, split_model  # noqa: E402
from tests.helpers import reliability_bounds as bounds  # noqa: E402
from tests.helpers import reliability_classes as classes  # noqa: E402
from tests.helpers import reliability_kit as kit  # noqa: E402
from tests.helpers import reliability_outputs as mistakes  # noqa: E402

# max_examples per loader at scale 1 (artifact loaders load each example twice: hashes on and off).
FUZZ = {
    "safetensors": 10000,
    "read_config": 3000,
    "body": 2000,
    "pack": 2000,
    "task": 2000,
    "store": 500,
    # generated families of hostile-artifact classes (tests/helpers/reliability_classes.py)
    "tokenizer_files": 300,
    "token_ids": 300,
    "names": 2000,
    "dtype_range": 300,
    # tests/helpers/reliability_bounds.py: misfits that verify --load must catch, oversized JSON and headers
    "compose_shapes": 300,
    "json_bounds": 300,
    # tests/helpers/reliability_outputs.py: output paths a writer must not replace, output pipes that close
    # (each case a CLI process: a few seconds), bad command lines and their one error line
    "output_paths": 1500,
    "closed_pipe": 30,
    "messages": 1000,
}


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def fuzz(samples: kit.Samples, scale: float, headroom_gb: float) -> dict:
    """Every loader under random damage, with the address space capped at its current size + headroom,
    so a loader that tried to allocate what a lying header claims would fail the run."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_bytes() + int(headroom_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    timings = {}
    try:
        for target, examples in FUZZ.items():
            n = max(1, int(examples * scale))
            start = time.perf_counter()
            if target == "safetensors":
                kit.fuzz_safetensors(samples, n, derandomize=False)
            elif target == "read_config":
                kit.fuzz_read_config(samples, n, derandomize=False)
            elif target in classes.FAMILIES:
                classes.FAMILIES[target](samples, n, derandomize=False)
            elif target in bounds.FAMILIES:
                bounds.FAMILIES[target](samples, n, derandomize=False)
            elif target in mistakes.FAMILIES:
                mistakes.FAMILIES[target](samples, n, derandomize=False)
            else:
                kit.fuzz_artifact(samples, target, n, derandomize=False)
            timings[target] = round(time.perf_counter() - start, 1)
            print(f"fuzz {target}: {kit.STATS[f'{target}:cases']} cases in {timings[target]} s", flush=True)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    by_target: dict = {}
    for key, value in kit.STATS.items():
        if ":" in key:
            target, outcome = key.split(":", 1)
            by_target.setdefault(target, {})[outcome] = value
    return {
        "cases": sum(v.get("cases", 0) for v in by_target.values()),
        "by_loader": by_target,
        "seconds": timings,
        "slowest_case_ms": kit.STATS["slowest_case_ms"],
        "slowest_case": kit.SLOWEST["case"][:300],
        "address_space_cap_gb": round(cap / 2**30, 1),
        "escaped_non_embswap_errors": 0,  # any would have stopped the run
    }


def crashes(root: Path, scale: float) -> dict:
    model, tokenizer = __import__("tests.helpers.models", fromlist=["make_mlm"]).make_mlm("bert")
    _, pack = split_model(model, tokenizer, "en")
    sources = {}
    for seed, tag in enumerate("AB"):
        sources[tag] = root / f"source-{tag}"
        kit.tagged_pack(pack, tag, rows=4000, seed=seed).save_pretrained(sources[tag])
    work = root / "work"
    work.mkdir()
    server = kit.ForkServer(work)
    server.warm(sources["A"])
    report: dict = {}
    try:
        sweeps = [kit.step_sweep(server, sources, root / "steps", fallback=False),
                  kit.step_sweep(server, sources, root / "steps", fallback=True),
                  kit.step_sweep(server, sources, root / "steps", fallback=False, first_save=True)]  # fmt: skip
        report["step_sweep"] = {"crash_points": sum(c["crash_points"] for c in sweeps), "intact": sum(c["intact"] for c in sweeps),
                                "steps": [s for s, _ in kit.FALLBACK_STEPS]}  # fmt: skip
        print(f"step sweep: {report['step_sweep']}", flush=True)
        kills = max(2, int(200 * scale))
        for mode, fallback in (("exchange", False), ("fallback", True)):
            counts = kit.random_kill_campaign(server, sources, root / "packs" / f"random-{mode}", kills, fallback=fallback,
                                              seed=int(time.time()))  # fmt: skip
            report[f"random_kills_{mode}"] = dict(counts)
            print(f"random kills ({mode}): {report[f'random_kills_{mode}']}", flush=True)
        full = []
        target = root / "packs" / "full-disk"
        LanguagePack.from_pretrained(sources["A"]).save_pretrained(target)
        for limit in (0, 1000, 100_000, 500_000):
            _, result = server.run("save_limited", source=str(sources["B"]), target=str(target), limit=limit)
            assert result["error"] == "ArtifactWriteError" and "\n" not in result["message"], result
            assert kit.holds(target, {"A": kit.pack_identity(LanguagePack.from_pretrained(sources["A"]))}) == "A"
            full.append({"limit_bytes": limit, "error": result["message"].split(": ", 1)[1][:120]})
        report["disk_full"] = {"attempts": len(full), "previous_intact": len(full), "examples": full[:1]}
        rounds = max(1, int(5 * scale))
        for mode, fallback in (("exchange", False), ("fallback", True)):
            total: dict = {}
            for i in range(rounds):
                counts = kit.concurrency_round(server, sources, root / "packs" / f"concurrent-{mode}-{i}", saves=20,
                                               readers=2, fallback=fallback)  # fmt: skip
                for key, value in counts.items():
                    total[key] = total.get(key, 0) + value
            report[f"concurrency_{mode}"] = {"rounds": rounds, **total}
            print(f"concurrency ({mode}): {report[f'concurrency_{mode}']}", flush=True)
    finally:
        server.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count (0.1 for a quick look)")
    parser.add_argument(
        "--headroom-gb", type=float, default=2.0, help="address space allowed beyond the start of the fuzz"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "reliability.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="embswap-reliability-") as scratch:
        root = Path(scratch)
        samples = kit.make_samples(root / "samples")
        fuzz_report = fuzz(samples, args.scale, args.headroom_gb)
        crash_report = crashes(root / "crash", args.scale)
        fs = subprocess.run(["stat", "-f", "-c", "%T", str(root)], capture_output=True, text=True).stdout.strip()
    result = {
        "fuzz": fuzz_report,
        "crashes": crash_report,
        "peak_rss_mb": round(kit.peak_rss_mb()),
        "seconds": round(time.perf_counter() - started),
        "scale": args.scale,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "file_system": fs,
        },  # fmt: skip
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    kills = sum(crash_report[f"random_kills_{m}"]["kills"] for m in ("exchange", "fallback"))
    inside = sum(crash_report[f"random_kills_{m}"]["mid_save"] for m in ("exchange", "fallback"))
    reads = sum(crash_report[f"concurrency_{m}"]["reads"] for m in ("exchange", "fallback"))
    print(
        f"\n{fuzz_report['cases']} fuzz cases, none escaped as anything but a one-line EmbswapError "
        f"(slowest {fuzz_report['slowest_case_ms']} ms); {crash_report['step_sweep']['crash_points']} crash points "
        f"+ {kills} SIGKILLs at random moments ({inside} inside a save), every artifact old or new and whole; "
        f"{reads} reads during concurrent "
        f"saves, all whole. Wrote {args.out} in {result['seconds']} s."
    )


if __name__ == "__main__":
    main()
