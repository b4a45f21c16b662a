"""What the benchmarks share: arguments, model shapes, synthetic vocabularies, subprocess
measurements, and writing results (JSON + PNG under benchmarks/results/, a table on stdout).

Every figure is a ratio measured side by side in one run: baseline and embswap alternate in the
same process, so machine load slows both alike. Memory is measured in a fresh subprocess per
configuration (RSS high-water mark), so nothing one configuration allocated lingers in another's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402

transformers.logging.set_verbosity_error()

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4, as embswap's tokenizers have them

# The shapes of docs/performance.md: the "tiny" preset (the demo's body) and BERT-base.
SHAPES = {
    "tiny": {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024},
    "base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
}


# ------------------------------------------------------------------------------------ arguments


def parser(description: str) -> argparse.ArgumentParser:
    """--quick (CI smoke, under 2 minutes), --threads, --out; a benchmark adds its own options."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run in under 2 minutes")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and PNG results")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one measurement in a fresh process
    return p


def setup(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)


# ------------------------------------------------------------------------------------ machine


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def environment(args: argparse.Namespace) -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "accelerator": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "niceness": os.nice(0),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average_start": load_average(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]),
    }


def accelerator_clause(environment: dict) -> str:
    """ " with an <GPU> GPU (all jobs share it)" for a report's Machine line, or "" on a CPU."""
    accelerator = environment.get("accelerator")
    return f" with an {accelerator} GPU (all jobs share it)" if accelerator else ""


def run_notes(environment: dict) -> list[str]:
    """The environment's free-text ``note`` (added after a run, e.g. how a lent machine ran it) as a sentence."""
    note = environment.get("note")
    return [note[:1].upper() + note[1:] + "."] if note else []


def rss_mb() -> float:
    """Current resident set size (MiB)."""
    return _status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    """High-water mark of the resident set size of this process (MiB)."""
    return _status_kb("VmHWM") / 1024


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


# glibc raises its mmap threshold after large frees and then keeps freed blocks in the heap, so RSS
# drifts up with allocation history rather than with live memory. A fixed threshold returns every
# large tensor to the system when freed: the high-water mark then follows what was really live.
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def in_subprocess(script: Path, payload: dict, threads: int, timeout: float = 1800) -> dict:
    """Run ``script --child JSON`` in a fresh interpreter; its last stdout line is the JSON result."""
    cmd = [sys.executable, str(script), "--threads", str(threads), "--child", json.dumps(payload)]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**os.environ, **CHILD_ENV}
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_payload(args: argparse.Namespace) -> dict | None:
    return json.loads(args.child) if args.child else None


def reply(result: dict) -> None:
    """The child's answer: one JSON line, last on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------------------ timing


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def clock(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def settle_memory() -> None:
    gc.collect()
    try:  # give freed heap pages back, so RSS shows what is live
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ------------------------------------------------------------------------------------ models and data


def synthetic_tokenizer(vocab_size: int):
    """A word-level tokenizer with exactly ``vocab_size`` entries: the 5 shared specials, then w0, w1, ...

    Any vocabulary size is reachable without training a tokenizer, and every word of the synthetic
    text below is exactly one token, so each configuration trains on exactly the tokens it names.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS)}
    vocab.update({f"w{i}": len(SPECIALS) + i for i in range(vocab_size - len(SPECIALS))})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def synthetic_texts(vocab_size: int, num_tokens: int, seed: int = 0, words_per_line: int = 100) -> list[str]:
    """Lines of Zipf-distributed words (exponent 1.1), as frequent tokens are in real text."""
    generator = torch.Generator().manual_seed(seed)
    ranks = torch.arange(1, vocab_size - len(SPECIALS) + 1, dtype=torch.float64)
    weights = ranks.pow(-1.1)
    ids = torch.multinomial(weights, num_tokens, replacement=True, generator=generator).tolist()
    return [
        " ".join(f"w{i}" for i in ids[start : start + words_per_line]) for start in range(0, len(ids), words_per_line)
    ]


def bert_config(shape: str | dict, vocab_size: int, max_positions: int = 512):
    dims = SHAPES[shape] if isinstance(shape, str) else shape
    return transformers.BertConfig(vocab_size=vocab_size, pad_token_id=0, max_position_embeddings=max_positions, **dims)


def random_body(shape: str | dict, seed: int = 0, vocab_size: int = 1000):
    """A randomly initialised BERT body of ``shape`` (a body does not depend on the vocabulary)."""
    from embswap import split_model

    torch.manual_seed(seed)
    tokenizer = synthetic_tokenizer(vocab_size)
    model = transformers.BertForMaskedLM(bert_config(shape, vocab_size))
    body, _ = split_model(model, tokenizer, "xx")
    return body


def random_pack(body, language: str, vocab_size: int, seed: int = 0, tokenizer=None):
    """A pack with N(0, 0.02) rows and a small random bias (what a trained pack weighs)."""
    from embswap import LanguagePack

    generator = torch.Generator().manual_seed(seed)
    return LanguagePack(
        language=language,
        tokenizer=tokenizer if tokenizer is not None else synthetic_tokenizer(vocab_size),
        word_embeddings=torch.randn(vocab_size, body.embedding_dim, generator=generator) * 0.02,
        output_bias=torch.randn(vocab_size, generator=generator) * 0.01,
        body_fingerprint=body.fingerprint,
    )


# ------------------------------------------------------------------------------------ results


def result_path(args: argparse.Namespace, name: str, suffix: str) -> Path:
    args.out.mkdir(parents=True, exist_ok=True)
    return args.out / f"{name}{'.quick' if args.quick else ''}.{suffix}"


def load_saved(args: argparse.Namespace, name: str) -> dict:
    """The last saved results of this benchmark and size (empty if none)."""
    path = result_path(args, name, "json")
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def save(args: argparse.Namespace, name: str, data: dict, load_average_end: str | None = None) -> Path:
    data = {
        **data,
        "load_average_end": load_average_end or load_average(),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    path = result_path(args, name, "json")
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def write_report(args: argparse.Namespace, name: str, report: dict, render, plot) -> Path:
    """Save ``report`` as JSON, ``render(report)`` as Markdown and ``plot(report, path)`` as PNG; print the table."""
    # Read once: the Markdown must show the figure the JSON holds.
    report = {**report, "load_average_end": load_average()}
    json_path = save(args, name, report, load_average_end=report["load_average_end"])
    markdown = render(report)
    write_atomic(result_path(args, name, "md"), markdown)
    plot(report, result_path(args, name, "png"))
    print(markdown)
    print(f"wrote {json_path} (+ .md, .png)")
    return json_path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a unique temporary sibling, then rename it over ``path``: readers never see
    half a file, and two writers of one path never share a temporary file."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pyplot():
    """matplotlib's pyplot on the file-only backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (the benchmarks print results on stdout)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [title, line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return "-" if value is None else str(value)


def target(name: str, measured: float | None, goal: float, higher_is_better: bool, unit: str = "x") -> dict:
    met = (
        None
        if measured is None or measured != measured
        else (measured >= goal if higher_is_better else measured <= goal)
    )
    return {
        "target": name,
        "goal": f"{'>=' if higher_is_better else '<='} {goal:g}{unit}",
        "measured": None if measured is None else round(measured, 4),
        "met": met,
    }


def print_targets(targets: Sequence[dict]) -> None:
    print(
        table(
            "Targets",
            ["target", "goal", "measured", "met"],
            [[t["target"], t["goal"], t["measured"], t["met"]] for t in targets],
        )
    )
