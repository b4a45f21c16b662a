"""Property-based fuzzing of every loader: truncated, bit-flipped, random and swapped-out files,
random JSON configs, hand-made safetensors headers. The only exception that may escape is an
EmbswapError with a one-line message; every case is time-bounded; memory stays flat.

The default suite runs a few hundred derandomized cases per loader (~30 s); the slow test and
``benchmarks/reliability.py`` run many more with fresh random seeds.
"""

import pytest

from tests.helpers import reliability_kit as kit

# max_examples per loader: (default suite, slow). Each artifact example loads twice (hashes on, off).
BUDGET = {
    "safetensors": (400, 4000),
    "read_config": (200, 2000),
    "body": (150, 1500),
    "pack": (150, 1500),
    "task": (150, 1500),
    "store": (40, 400),
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    made = kit.make_samples(tmp_path_factory.mktemp("samples"))
    kit.fuzz_artifact(made, "store", 1, derandomize=True)  # warm up lazy imports before memory is measured
    return made


def _run(samples, target: str, examples: int, derandomize: bool) -> None:
    before_rss = kit.peak_rss_mb()
    before = kit.STATS[f"{target}:cases"]
    if target == "safetensors":
        kit.fuzz_safetensors(samples, examples, derandomize=derandomize)
    elif target == "read_config":
        kit.fuzz_read_config(samples, examples, derandomize=derandomize)
    else:
        kit.fuzz_artifact(samples, target, examples, derandomize=derandomize)
    ran = kit.STATS[f"{target}:cases"] - before
    outcomes = {
        k.split(":", 1)[1]: v for k, v in kit.STATS.items() if k.startswith(f"{target}:") and not k.endswith(":cases")
    }
    print(f"{target}: {ran} cases, outcomes {outcomes}, peak RSS +{kit.peak_rss_mb() - before_rss:.0f} MB")
    assert ran >= examples  # hypothesis ran what was asked (it may stop early only when it runs out of inputs)
    # Nothing damaged may blow memory up: the samples are KBs, so the peak stays where loading them put it.
    assert kit.peak_rss_mb() - before_rss < 300


@pytest.mark.parametrize("target", list(BUDGET))
def test_fuzz_loader(samples, target):
    _run(samples, target, BUDGET[target][0], derandomize=True)


@pytest.mark.slow
@pytest.mark.parametrize("target", list(BUDGET))
def test_fuzz_loader_long(samples, target):
    _run(samples, target, BUDGET[target][1], derandomize=False)
