"""Storage: a store of 10 languages x 3 tasks against 30 full fine-tuned model copies.

    nice -n 15 python benchmarks/storage.py            # BERT-base shape, 32k vocabularies
    nice -n 15 python benchmarks/storage.py --quick    # tiny shape, and no accuracy check (seconds)

Bytes are computed from tensor sizes and checked against real files: one body, one pack in each
precision, one task module of each mode and one exported full model are written and measured
(the difference is tokenizer and config files). Task modules: "adapter" (a Houlsby task adapter
and head on the untouched body, MAD-X style) and "full" (the paper: every fine-tuned body tensor).
If a trained store exists at /tmp/demo-full/store (``embswap demo``), the zero-shot accuracy of its
genre task is measured with the packs in float32, bfloat16 and float16, and as a serving table
of int8 rows with per-row scales (``MultiLanguageModel(table_dtype=torch.int8)``). Writes
benchmarks/results/storage[.quick].{json,png}.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from embswap import TaskModule, adapters_support  # noqa: E402
from embswap.compose import build_empty_model, composed_state_dict, export  # noqa: E402
from embswap.store import folder_bytes  # noqa: E402

NAME = "storage"
LANGUAGES, TASKS = 10, 3
DEMO_STORE = Path("/tmp/demo-full/store")
QUICK = {"shape": "tiny", "vocab": 32000, "accuracy_examples": 0}
DEFAULT = {"shape": "base", "vocab": 32000, "accuracy_examples": 1000}
PACK_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Each precision's pack as the model sees it; "int8" is the serving table (its rows, multiplied back).
PRECISIONS = [*PACK_DTYPES, "int8"]


def as_served(pack, precision: str):
    from embswap.multilang import int8_pack

    if precision == "int8":
        return int8_pack(pack)
    return pack.to(PACK_DTYPES[precision]) if precision != "float32" else pack


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def task_modules(body, pack) -> dict[str, TaskModule]:
    """A 6-class classification task in both storage modes, with the shapes fine-tuning produces."""
    labels = [f"genre{i}" for i in range(6)]
    config = body.hf_config(pack.vocab_size, num_labels=len(labels))
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    state = model.state_dict()
    head = {k: v.clone() for k, v in state.items() if k not in body.tensors and "word_embeddings" not in k}
    special = {i: torch.randn(body.embedding_dim) for i in body.special_tokens.values()}
    # Full mode stores every body tensor the classifier uses (fine-tuning moves all of them).
    delta = {k: v + 1e-3 for k, v in body.tensors.items() if k in state}
    full = TaskModule(
        task="classification",
        labels=labels,
        head=head,
        body_fingerprint=body.fingerprint,
        mode="full",
        body_delta=delta,
        special_rows=special,
    )
    empty = build_empty_model(body, pack.vocab_size, full)
    empty.load_state_dict(composed_state_dict(empty, body, pack, full))
    adapter_config = adapters_support.houlsby_config()
    adapters_support.add_adapter(empty, adapters_support.TASK, adapter_config)
    adapter = TaskModule(
        task="classification",
        labels=labels,
        head=head,
        body_fingerprint=body.fingerprint,
        mode="adapter",
        special_rows=special,
        adapter_config=adapter_config,
        adapter_tensors=adapters_support.extract(empty, adapters_support.TASK),
    )
    return {"full": full, "adapter": adapter}


def measure_bytes(root: Path, shape: str, vocab: int) -> dict:
    body = common.random_body(shape)
    pack = common.random_pack(body, "l0", vocab)
    tasks = task_modules(body, pack)
    computed = {
        "body": tensor_bytes(body.tensors.values()),
        "task_full": tensor_bytes(
            [*tasks["full"].head.values(), *tasks["full"].body_delta.values(), *tasks["full"].special_rows.values()]
        ),
        "task_adapter": tensor_bytes(
            [
                *tasks["adapter"].head.values(),
                *tasks["adapter"].adapter_tensors.values(),
                *tasks["adapter"].special_rows.values(),
            ]
        ),
    }
    written = {"body": folder_bytes(body.save_pretrained(root / "body"))}
    for name, dtype in PACK_DTYPES.items():
        half = pack.to(dtype) if dtype != torch.float32 else pack
        computed[f"pack_{name}"] = tensor_bytes([half.word_embeddings, half.output_bias])
        written[f"pack_{name}"] = folder_bytes(half.save_pretrained(root / f"pack-{name}"))
    for mode, task in tasks.items():
        written[f"task_{mode}"] = folder_bytes(task.save_pretrained(root / f"task-{mode}"))
    # One language x task as a standalone fine-tuned model: what a store replaces 30 of.
    full_model = export(body, pack, tasks["full"], root / "full-model")
    written["full_model"] = folder_bytes(full_model)
    written["full_model_weights"] = (full_model / "model.safetensors").stat().st_size
    model = transformers.AutoModelForSequenceClassification.from_pretrained(full_model)
    computed["full_model"] = tensor_bytes(model.state_dict().values())
    del model
    return {
        "computed_tensor_bytes": computed,
        "written_folder_bytes": written,
        "hidden": body.embedding_dim,
        "vocab": vocab,
        "body_parameters": body.num_parameters,
    }


def totals(sizes: dict, source: str) -> dict:
    b = sizes[source]
    full_models = LANGUAGES * TASKS * b["full_model"]
    out = {"thirty_full_models": full_models}
    for mode in ("adapter", "full"):
        for dtype in PACK_DTYPES:
            total = b["body"] + LANGUAGES * b[f"pack_{dtype}"] + TASKS * b[f"task_{mode}"]
            out[f"store_{mode}_tasks_{dtype}_packs"] = {"bytes": total, "ratio": round(total / full_models, 4)}
    return out


# ------------------------------------------------------------------------------------ half-precision accuracy


def half_precision_accuracy(path: Path, examples: int) -> dict:
    """Zero-shot accuracy of a trained store's genre task with its packs in float32 / bf16 / fp16."""
    from embswap import Store
    from embswap.data import bible
    from embswap.evaluate import evaluate

    if examples <= 0:
        return {"skipped": "quick run"}
    store = Store(path)
    try:
        languages, task_names = store.languages, store.task_names
    except OSError as err:
        return {"skipped": f"no trained store at {path} ({err})"}
    task_name = next((t for t in task_names if "genre" in t), None)
    if not path.is_dir() or task_name is None or len(languages) < 2:
        return {
            "skipped": f"no trained store with a genre task and several packs at {path} "
            f"(found languages {languages}, tasks {task_names}); run `embswap demo` first"
        }
    body, task = store.body, store.task(task_name)
    out = {"store": str(path), "task": task_name, "examples_per_language": examples, "languages": {}}
    for lang in [lang for lang in languages if lang in bible.LANGUAGES]:  # not en-relearned and the like
        rows = bible.genre_examples(lang, "test")
        step = max(1, len(rows) // examples)
        rows = rows[::step][:examples]
        pack = store.pack(lang)
        scores = {}
        for name in PRECISIONS:
            scores[name] = evaluate(body, as_served(pack, name), task, rows, device="cpu")["accuracy"]
        for name in PRECISIONS[1:]:
            scores[f"{name}_change"] = round(scores[name] - scores["float32"], 2)
        out["languages"][lang] = scores
    out["load_average"] = common.load_average()
    return out


# ------------------------------------------------------------------------------------ main


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--trained-store",
        type=Path,
        default=DEMO_STORE,
        help="a trained store with a genre task, for the half-precision accuracy check",
    )
    args = p.parse_args()
    common.setup(args)
    sizes = QUICK if args.quick else DEFAULT
    results: dict = {
        "benchmark": NAME,
        "quick": args.quick,
        "environment": common.environment(args),
        "shape": sizes["shape"],
        "languages": LANGUAGES,
        "tasks": TASKS,
    }
    root = Path(tempfile.mkdtemp(prefix="embswap-storage-"))
    started = time.perf_counter()
    try:
        sizes_found = measure_bytes(root, sizes["shape"], sizes["vocab"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["artifacts"] = sizes_found
    results["computed"] = totals(sizes_found, "computed_tensor_bytes")
    results["written"] = totals(sizes_found, "written_folder_bytes")
    results["half_precision_accuracy"] = half_precision_accuracy(args.trained_store, sizes["accuracy_examples"])
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    report(results)
    png = common.result_path(args, NAME, "png")
    plot(results, png)
    print(f"wrote {common.save(args, NAME, results)} and {png}")


def plot(results: dict, path: Path) -> None:
    plt = common.pyplot()
    acc = results["half_precision_accuracy"]
    fig, axes = plt.subplots(1, 1 if "skipped" in acc else 2, figsize=(13 if "skipped" not in acc else 8, 4.5))
    axes = [axes] if "skipped" in acc else list(axes)
    computed = results["computed"]
    keys = [k for k in computed if k != "thirty_full_models"]
    labels = [k.removeprefix("store_").replace("_tasks_", " tasks,\n").replace("_packs", " packs") for k in keys]
    values = [computed[k]["bytes"] / 2**30 for k in keys] + [computed["thirty_full_models"] / 2**30]
    axes[0].barh(labels + ["30 full models"], values, color=["C1"] * len(keys) + ["C0"])
    for i, k in enumerate(keys):
        axes[0].annotate(f"{computed[k]['ratio']:.2f}x", (values[i], i), xytext=(3, -3), textcoords="offset points")
    axes[0].set_xlabel("GiB")
    axes[0].set_title(f"{LANGUAGES} languages x {TASKS} tasks, {results['shape']} shape")
    if "skipped" not in acc:
        langs = list(acc["languages"])
        width = 0.2
        for j, name in enumerate(n for n in PRECISIONS if n in acc["languages"][langs[0]]):
            axes[1].bar(
                [i + (j - 1.5) * width for i in range(len(langs))],
                [acc["languages"][lang][name] for lang in langs],
                width,
                label=name,
            )
        axes[1].set_xticks(range(len(langs)), langs)
        axes[1].set_ylabel("zero-shot accuracy (%)")
        axes[1].set_title(f"Packs in half precision or an int8 table ({acc['task']})")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(results: dict) -> None:
    c, w = results["artifacts"]["computed_tensor_bytes"], results["artifacts"]["written_folder_bytes"]
    mb = 2**20
    print(
        common.table(
            f"One artifact of each kind ({results['shape']} shape; MiB)",
            ["artifact", "tensors", "folder on disk"],
            [[k, c[k] / mb if k in c else None, w[k] / mb if k in w else None] for k in sorted(set(c) | set(w))],
        )
    )
    rows = []
    for key in results["computed"]:
        if key == "thirty_full_models":
            continue
        rows.append(
            [
                key,
                results["computed"][key]["bytes"] / mb,
                results["computed"][key]["ratio"],
                results["written"][key]["ratio"],
            ]
        )
    rows.append(["30 full models", results["computed"]["thirty_full_models"] / mb, 1.0, 1.0])
    print(
        common.table(
            f"{LANGUAGES} languages x {TASKS} tasks",
            ["layout", "MiB (tensors)", "ratio (tensors)", "ratio (files)"],
            rows,
        )
    )
    acc = results["half_precision_accuracy"]
    if "skipped" in acc:
        print(f"Half-precision accuracy: skipped ({acc['skipped']})\n")
    else:
        print(
            common.table(
                f"Zero-shot accuracy (%) of {acc['task']} with packs in half precision or an int8 table",
                ["language", *PRECISIONS, *(f"{n} change" for n in PRECISIONS[1:])],
                [
                    [lang, *(s.get(n) for n in PRECISIONS), *(s.get(f"{n}_change") for n in PRECISIONS[1:])]
                    for lang, s in acc["languages"].items()
                ],
            )
        )


if __name__ == "__main__":
    main()
