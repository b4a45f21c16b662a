"""Serving many languages: one body with swappable packs against one full model per language.

    nice -n 15 python benchmarks/serving.py            # BERT-base shape, 32k vocabularies, 10 languages
    nice -n 15 python benchmarks/serving.py --quick    # tiny shape (under 2 minutes)

Measures, side by side in this process (or in a fresh subprocess per configuration for memory):

- language switch on a loaded ``MultiLanguageModel`` vs ``AutoModelForMaskedLM.from_pretrained`` of
  that language's exported full model;
- resident memory of one body + 10 packs (float32, and with the table in bfloat16 or int8 rows
  with per-row scales) vs 10 full models in one process, after one forward pass per language;
- mixed-language batches (4 languages in one batch) vs single-language batches of the same size;
- ``embswap.compose`` from a store on disk vs ``from_pretrained`` of the equivalent exported folder
  (the model alone, and the model with its tokenizer, which compose also returns): again in a
  process that already verified those files, the first time in a process (SHA-256 of every
  file, body fingerprint, NaN/Inf scan), and the first call of a fresh interpreter, both for a
  store an earlier process verified (the check cache, ``EMBSWAP_CHECK_CACHE``) and for one never
  verified; with the parts of compose timed separately (integrity checks, assembly).

Weights are random (built from a config): speed and memory do not depend on their values.
Writes benchmarks/results/serving[.quick].{json,png}.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForMaskedLM, AutoTokenizer  # noqa: E402

from embswap import Body, LanguagePack, Store, TaskModule, compose, load  # noqa: E402
from embswap.compose import build_empty_model, composed_state_dict, export, load_composed  # noqa: E402
from embswap.io import forget_checked  # noqa: E402

NAME = "serving"
QUICK = {"shape": "tiny", "vocab": 32000, "languages": 10, "batch": 16, "seq": 128, "rounds": 2, "switches": 500}
DEFAULT = {"shape": "base", "vocab": 32000, "languages": 10, "batch": 16, "seq": 128, "rounds": 3, "switches": 2000}
# The precisions the packs' table is kept in (MultiLanguageModel's table_dtype).
TABLE_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "int8": torch.int8}
# Fresh interpreters per load kind, taken in turns (not kind by kind) so that drift in the
# machine's load spreads over every kind alike.
COLD_ROUNDS = 7


def build_store(root: Path, shape: str, vocab: int, languages: int) -> dict:
    """A store with one random body and ``languages`` random packs, and one exported full model."""
    body = common.random_body(shape)
    store = Store(root / "store")
    store.save_body(body)
    tokenizer = common.synthetic_tokenizer(vocab)
    for i in range(languages):
        store.save_pack(common.random_pack(body, f"l{i}", vocab, seed=i, tokenizer=tokenizer))
    export(body, store.pack("l0"), None, root / "export-l0")
    return {"store": root / "store", "export": root / "export-l0", "body": body}


def random_task(body: Body, vocab: int) -> TaskModule:
    """A 3-class classification task module with a random head (stands in for a fine-tuned one)."""
    import transformers

    config = body.hf_config(vocab, num_labels=3)
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    head = {k: v.clone() for k, v in model.state_dict().items() if k not in body.tensors and "word_embeddings" not in k}
    return TaskModule(
        task="classification", labels=["a", "b", "c"], head=head, body_fingerprint=body.fingerprint, mode="frozen"
    )


# ------------------------------------------------------------------------------------ measurements


def switch_vs_reload(paths: dict, sizes: dict) -> dict:
    multi = load(paths["store"])
    languages = multi.languages
    n = sizes["switches"]
    start = time.perf_counter()
    for i in range(n):
        multi.set_language(languages[i % len(languages)])
    per_switch = (time.perf_counter() - start) / n
    reloads = [
        common.clock(lambda: AutoModelForMaskedLM.from_pretrained(paths["export"])) for _ in range(sizes["rounds"])
    ]
    ready = [
        common.clock(lambda: _first_forward(AutoModelForMaskedLM.from_pretrained(paths["export"]), sizes["seq"]))
        for _ in range(sizes["rounds"])
    ]
    del multi
    common.settle_memory()
    return {
        "switch_us": round(per_switch * 1e6, 2),
        "from_pretrained_s": round(common.median(reloads), 4),
        "from_pretrained_plus_first_forward_s": round(common.median(ready), 4),
        "speedup": round(common.median(reloads) / per_switch, 1),
        "load_average": common.load_average(),
    }


def _first_forward(model, seq: int):
    with torch.no_grad():
        model(input_ids=torch.randint(5, 1000, (1, seq)))
    return model


def compose_vs_from_pretrained(args, paths: dict, sizes: dict) -> dict:
    store = Store(paths["store"])
    timings: dict[str, list[float]] = {}

    def record(key, fn, first=False):
        if first:
            forget_checked()  # nothing verified yet: hashes, fingerprint and NaN/Inf scan all run
        timings.setdefault(key, []).append(common.clock(fn))

    def with_tokenizer():
        return AutoModelForMaskedLM.from_pretrained(paths["export"]), AutoTokenizer.from_pretrained(paths["export"])

    def body_and_pack(**options):
        return compose(store.body_path, store.pack_path("l0"), **options)

    for _ in range(sizes["rounds"]):
        record("from_pretrained", lambda: AutoModelForMaskedLM.from_pretrained(paths["export"]))
        record("from_pretrained_with_tokenizer", with_tokenizer)
        record("compose_first_no_file_hashes", lambda: body_and_pack(verify=False), first=True)
        record("compose_first", body_and_pack, first=True)
        record("compose", body_and_pack)  # again: this process verified these files just now
        record("compose_plus_first_forward", lambda: _first_forward(body_and_pack()[0], sizes["seq"]))
        record(
            "from_pretrained_with_tokenizer_plus_first_forward",
            lambda: _first_forward(with_tokenizer()[0], sizes["seq"]),
        )
        # The parts of compose: reading with integrity checks, reading without file hashes, assembling.
        record(
            "read_body_first_no_file_hashes", lambda: Body.from_pretrained(store.body_path, verify=False), first=True
        )
        record("read_pack_first", lambda: LanguagePack.from_pretrained(store.pack_path("l0")), first=True)
        record("read_pack_again", lambda: LanguagePack.from_pretrained(store.pack_path("l0")))
        record("read_body_first", lambda: Body.from_pretrained(store.body_path), first=True)
        record("read_body_again", lambda: Body.from_pretrained(store.body_path))
        loaded = (
            Body.from_pretrained(store.body_path, verify=False),
            LanguagePack.from_pretrained(store.pack_path("l0"), verify=False),
        )
        record("assemble_only", lambda: _assemble(*loaded))
        record("assemble_copying", lambda: compose(*loaded))
    out = {key: round(common.median(values), 4) for key, values in timings.items()}
    compose(store.body_path, store.pack_path("l0"))  # verified once, so the check cache knows the store
    kinds = ("cold-compose", "cold-compose-first-ever", "cold-from-pretrained-with-tokenizer", "cold-from-pretrained")
    seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(COLD_ROUNDS if not args.quick else sizes["rounds"]):
        for kind in kinds:
            child = common.in_subprocess(Path(__file__), {"kind": kind, **paths_for_child(paths)}, args.threads)
            seconds[kind].append(child["seconds"])
    cold = {kind: common.median(values) for kind, values in seconds.items()}
    out["fresh_process_rounds"] = {
        k.removeprefix("cold-"): [round(v, 4) for v in values] for k, values in seconds.items()
    }
    out.update({f"fresh_process_{k.removeprefix('cold-').replace('-', '_')}": round(v, 4) for k, v in cold.items()})
    model_only, with_tok = out["from_pretrained"], out["from_pretrained_with_tokenizer"]
    out["ratios"] = {
        "compose_vs_from_pretrained_with_tokenizer": round(out["compose"] / with_tok, 2),
        "compose_vs_from_pretrained": round(out["compose"] / model_only, 2),
        "compose_first_vs_from_pretrained_with_tokenizer": round(out["compose_first"] / with_tok, 2),
        "compose_first_no_file_hashes_vs_from_pretrained_with_tokenizer": round(
            out["compose_first_no_file_hashes"] / with_tok, 2
        ),
        "fresh_process_compose_vs_from_pretrained_with_tokenizer": round(
            out["fresh_process_compose"] / out["fresh_process_from_pretrained_with_tokenizer"], 2
        ),
        "fresh_process_compose_first_ever_vs_from_pretrained_with_tokenizer": round(
            out["fresh_process_compose_first_ever"] / out["fresh_process_from_pretrained_with_tokenizer"], 2
        ),
        "ready_to_serve": round(
            out["compose_plus_first_forward"] / out["from_pretrained_with_tokenizer_plus_first_forward"], 2
        ),
        "assembly_vs_from_pretrained": round(out["assemble_only"] / model_only, 2),
    }
    out["load_average"] = common.load_average()
    return out


def paths_for_child(paths: dict) -> dict:
    return {"store": str(paths["store"]), "export": str(paths["export"])}


def child_cold_load(payload: dict) -> dict:
    """Seconds of the first load in this fresh interpreter (imports done, page cache warm)."""
    kind = payload["kind"]
    if kind == "cold-compose-first-ever":
        os.environ["EMBSWAP_CHECK_CACHE"] = "off"  # as if no process had ever verified the store
        kind = "cold-compose"
    store = Store(payload["store"])
    loads = {
        "cold-compose": lambda: compose(store.body_path, store.pack_path("l0")),
        "cold-from-pretrained-with-tokenizer": lambda: (
            AutoModelForMaskedLM.from_pretrained(payload["export"]),
            AutoTokenizer.from_pretrained(payload["export"]),
        ),
        "cold-from-pretrained": lambda: AutoModelForMaskedLM.from_pretrained(payload["export"]),
    }
    return {"seconds": common.clock(loads[kind])}


def _assemble(body: Body, pack: LanguagePack):
    """compose's own work once the artifacts are read: an empty model that adopts their tensors."""
    model = build_empty_model(body, pack.vocab_size)
    load_composed(model, composed_state_dict(model, body, pack, None), take_over=True)
    return model


def mixed_batches(paths: dict, sizes: dict) -> dict:
    store = Store(paths["store"])
    task = random_task(store.body, sizes["vocab"])
    languages = store.languages[:4]
    multi = load(store, languages=languages, task=task)
    batch, seq = sizes["batch"], sizes["seq"]
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, sizes["vocab"], (batch, seq), generator=generator)
    mask = torch.ones_like(ids)
    mixed_tags = [languages[i % 4] for i in range(batch)]
    with torch.no_grad():
        mixed_out = multi(ids, languages=mixed_tags, attention_mask=mask).logits
        for lang in languages:  # exactness: each row equals its single-language run
            rows = [i for i, tag in enumerate(mixed_tags) if tag == lang]
            single = multi(ids, languages=[lang] * batch, attention_mask=mask).logits
            if not torch.allclose(mixed_out[rows], single[rows], rtol=0, atol=1e-5):
                raise AssertionError(f"mixed batch differs from single-language batch for {lang}")

        def timed(tags):
            return common.clock(lambda: multi(ids, languages=tags, attention_mask=mask))

        mixed, single = [], []
        for r in range(2 * sizes["rounds"] + 1):  # the first round warms up; the order turns every round
            single_tags = [languages[r % 4]] * batch
            if r % 2 == 0:
                mixed.append(timed(mixed_tags))
                single.append(timed(single_tags))
            else:
                single.append(timed(single_tags))
                mixed.append(timed(mixed_tags))
    m, s = common.median(mixed[1:]), common.median(single[1:])
    return {
        "batch": batch,
        "seq": seq,
        "languages_in_mixed_batch": 4,
        "mixed_sequences_per_s": round(batch / m, 2),
        "single_sequences_per_s": round(batch / s, 2),
        "mixed_vs_single_throughput": round(s / m, 3),
        "rounds": {"mixed_s": [round(x, 3) for x in mixed[1:]], "single_s": [round(x, 3) for x in single[1:]]},
        "load_average": common.load_average(),
    }


# ------------------------------------------------------------------------------------ memory (subprocesses)


def child_memory(payload: dict) -> dict:
    import transformers

    common.settle_memory()
    before = common.rss_mb()
    seq = payload["seq"]
    if payload["kind"] == "full-models":
        # Ten servable models: each with its tokenizer, as the packs side holds one per language.
        config = common.bert_config(payload["shape"], payload["vocab"])
        models, tokenizers = [], []
        for i in range(payload["languages"]):
            torch.manual_seed(i)
            models.append(transformers.BertForMaskedLM(config).eval())
            tokenizers.append(AutoTokenizer.from_pretrained(payload["export"]))
        for model in models:
            _first_forward(model, seq)
    else:
        dtype = TABLE_DTYPES[payload["table_dtype"]]
        multi = load(payload["store"], table_dtype=dtype)
        for lang in multi.languages:
            multi.set_language(lang)
            _first_forward(multi.model, seq)
    common.settle_memory()
    return {
        "rss_before_mb": round(before, 1),
        "rss_mb": round(common.rss_mb(), 1),
        "peak_rss_mb": round(common.peak_rss_mb(), 1),
    }


def memory(args, paths: dict, sizes: dict) -> dict:
    base = {
        "shape": sizes["shape"],
        "vocab": sizes["vocab"],
        "languages": sizes["languages"],
        "seq": sizes["seq"],
        "store": str(paths["store"]),
        "export": str(paths["export"]),
    }
    out = {"child_env": common.CHILD_ENV, "load_average": common.load_average()}
    out["full_models"] = common.in_subprocess(Path(__file__), {**base, "kind": "full-models"}, args.threads)
    for dtype in TABLE_DTYPES:
        out[f"body_plus_packs_{dtype}"] = common.in_subprocess(
            Path(__file__), {**base, "kind": "packs", "table_dtype": dtype}, args.threads
        )
    full = out["full_models"]
    for dtype in TABLE_DTYPES:
        entry = out[f"body_plus_packs_{dtype}"]
        if "rss_mb" in entry and "rss_mb" in full:
            entry["rss_vs_full_models"] = round(entry["rss_mb"] / full["rss_mb"], 3)
            entry["growth_vs_full_models"] = round(
                (entry["rss_mb"] - entry["rss_before_mb"]) / (full["rss_mb"] - full["rss_before_mb"]), 3
            )
    body = paths["body"]
    body_bytes = sum(t.numel() * t.element_size() for t in body.tensors.values())
    pack_bytes = sizes["vocab"] * (body.embedding_dim + 1) * 4
    out["tensor_arithmetic"] = {
        "body_mb": round(body_bytes / 2**20, 1),
        "pack_mb": round(pack_bytes / 2**20, 1),
        "ratio_float32": round(
            (body_bytes + sizes["languages"] * pack_bytes) / (sizes["languages"] * (body_bytes + pack_bytes)), 3
        ),
        "ratio_bfloat16_table": round(
            (body_bytes + sizes["languages"] * pack_bytes / 2) / (sizes["languages"] * (body_bytes + pack_bytes)), 3
        ),
        # int8 rows + one float32 scale per row; the output bias stays float32
        "ratio_int8_table": round(
            (body_bytes + sizes["languages"] * sizes["vocab"] * (body.embedding_dim + 8))
            / (sizes["languages"] * (body_bytes + pack_bytes)),
            3,
        ),
    }
    return out


# ------------------------------------------------------------------------------------ main


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    common.setup(args)
    payload = common.child_payload(args)
    if payload is not None:
        common.reply(child_cold_load(payload) if payload["kind"].startswith("cold-") else child_memory(payload))
        return
    sizes = QUICK if args.quick else DEFAULT
    results: dict = {"benchmark": NAME, "quick": args.quick, "environment": common.environment(args), "sizes": sizes}
    root = Path(tempfile.mkdtemp(prefix="embswap-serving-"))
    os.environ["EMBSWAP_CHECK_CACHE"] = str(root / "checked")  # the benchmark's own; children inherit it
    started = time.perf_counter()
    try:
        paths = build_store(root, sizes["shape"], sizes["vocab"], sizes["languages"])
        print(f"[{time.perf_counter() - started:.0f}s] store written", file=sys.stderr)
        results["switch"] = switch_vs_reload(paths, sizes)
        results["compose"] = compose_vs_from_pretrained(args, paths, sizes)
        print(f"[{time.perf_counter() - started:.0f}s] switch and compose done", file=sys.stderr)
        results["mixed_batches"] = mixed_batches(paths, sizes)
        print(f"[{time.perf_counter() - started:.0f}s] mixed batches done", file=sys.stderr)
        paths_for_children = {**paths}
        results["memory"] = memory(args, paths_for_children, sizes)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    report(results)
    png = common.result_path(args, NAME, "png")
    plot(results, png)
    print(f"wrote {common.save(args, NAME, results)} and {png}")


def plot(results: dict, path: Path) -> None:
    plt = common.pyplot()
    s, c, mb, mem = results["switch"], results["compose"], results["mixed_batches"], results["memory"]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.6))
    ax = axes[0]
    ax.bar(["set_language", "from_pretrained"], [s["switch_us"] / 1e6, s["from_pretrained_s"]], color=["C1", "C0"])
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log)")
    ax.set_title(f"Switch language: {s['speedup']:,.0f}x faster")
    ax = axes[1]
    names = ["full_models", "body_plus_packs_float32", "body_plus_packs_bfloat16", "body_plus_packs_int8"]
    labels = [
        "10 full models\n+ tokenizers",
        "body +\n10 packs",
        "body + 10 packs\n(bf16 table)",
        "body + 10 packs\n(int8 table)",
    ]
    values = [mem.get(n, {}).get("rss_mb", 0) / 1024 for n in names]
    ax.bar(labels, values, color=["C0", "C1", "C2", "C3"])
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylabel("RSS after one forward each (GiB)")
    ax.set_title("Memory of 10 languages in one process")
    ax = axes[2]
    labels = [
        "from_pre-\ntrained\n+ tokenizer",
        "compose\n(again)",
        "compose\n(first)",
        "new process:\nfrom_pre-\ntrained\n+ tokenizer",
        "new\nprocess:\ncompose",
        "new process:\ncompose,\nnever\nverified",
    ]
    keys = [
        "from_pretrained_with_tokenizer",
        "compose",
        "compose_first",
        "fresh_process_from_pretrained_with_tokenizer",
        "fresh_process_compose",
        "fresh_process_compose_first_ever",
    ]
    ax.bar(labels, [c.get(k, 0) for k in keys], color=["C0", "C1", "C1", "C0", "C1", "C1"])
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log)")
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title("Load one language's model + tokenizer")
    ax = axes[3]
    ax.bar(
        ["single-language", "4 languages mixed"],
        [mb["single_sequences_per_s"], mb["mixed_sequences_per_s"]],
        color=["C0", "C1"],
    )
    ax.set_ylabel("sequences / s")
    ax.set_title(f"Batch of {mb['batch']}: mixed = {mb['mixed_vs_single_throughput']:.2f}x single")
    fig.suptitle(
        f"Serving ({results['sizes']['shape']} shape, {results['sizes']['vocab'] // 1000}k vocabularies, 1 thread)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(results: dict) -> None:
    s, c, mb, mem = results["switch"], results["compose"], results["mixed_batches"], results["memory"]
    label = f"{results['sizes']['shape']} shape, {results['sizes']['vocab'] // 1000}k vocabularies"
    print(
        common.table(
            f"Language switch ({label})",
            ["measure", "value"],
            [
                ["set_language (us)", s["switch_us"]],
                ["from_pretrained (s)", s["from_pretrained_s"]],
                ["from_pretrained + first forward (s)", s["from_pretrained_plus_first_forward_s"]],
                ["speedup", s["speedup"]],
                ["load average", s["load_average"]],
            ],
        )
    )
    print(
        common.table(
            "Compose from a store vs from_pretrained (median seconds)",
            ["step", "seconds"],
            [[k, v] for k, v in c.items() if k not in ("load_average", "ratios", "fresh_process_rounds")],
        )
    )
    print(common.table("Compose: ratios", ["ratio", "value"], [[k, v] for k, v in c["ratios"].items()]))
    print(
        common.table("Mixed-language batches", ["measure", "value"], [[k, v] for k, v in mb.items() if k != "rounds"])
    )
    rows = [
        [
            name,
            e.get("rss_before_mb"),
            e.get("rss_mb"),
            e.get("rss_vs_full_models"),
            e.get("growth_vs_full_models"),
            e.get("error"),
        ]
        for name, e in mem.items()
        if isinstance(e, dict) and ("rss_mb" in e or "error" in e)
    ]
    print(
        common.table(
            "Resident memory after one forward per language (fresh process each)",
            ["configuration", "RSS before MiB", "RSS MiB", "x full models", "growth x", "error"],
            rows,
        )
    )
    targets = [
        common.target("language switch vs from_pretrained", s["speedup"], 1000, True),
        common.target(
            "RSS body + packs (float32) vs full models",
            mem.get("body_plus_packs_float32", {}).get("rss_vs_full_models"),
            0.25,
            False,
        ),
        common.target(
            "RSS body + packs (bf16 table) vs full models",
            mem.get("body_plus_packs_bfloat16", {}).get("rss_vs_full_models"),
            0.25,
            False,
        ),
        common.target(
            "RSS body + packs (int8 table) vs full models",
            mem.get("body_plus_packs_int8", {}).get("rss_vs_full_models"),
            0.25,
            False,
        ),
        common.target(
            "RSS growth over the interpreter, body + packs (float32)",
            mem.get("body_plus_packs_float32", {}).get("growth_vs_full_models"),
            0.25,
            False,
        ),
        common.target(
            "RSS growth over the interpreter, body + packs (bf16 table)",
            mem.get("body_plus_packs_bfloat16", {}).get("growth_vs_full_models"),
            0.25,
            False,
        ),
        common.target("mixed vs single-language throughput", mb["mixed_vs_single_throughput"], 0.9, True),
        common.target(
            "compose (model + tokenizer) vs from_pretrained + tokenizer, files verified before",
            c["ratios"]["compose_vs_from_pretrained_with_tokenizer"],
            1.0,
            False,
        ),
        common.target(
            "compose vs from_pretrained (model alone), files verified before",
            c["ratios"]["compose_vs_from_pretrained"],
            1.0,
            False,
        ),
        common.target(
            "compose vs from_pretrained + tokenizer, fresh process, store verified by an earlier process",
            c["ratios"]["fresh_process_compose_vs_from_pretrained_with_tokenizer"],
            1.0,
            False,
        ),
        common.target(
            "compose vs from_pretrained + tokenizer, fresh process, store never verified (every check runs)",
            c["ratios"]["fresh_process_compose_first_ever_vs_from_pretrained_with_tokenizer"],
            1.0,
            False,
        ),
        common.target(
            "compose + first forward vs from_pretrained + tokenizer + first forward",
            c["ratios"]["ready_to_serve"],
            1.0,
            False,
        ),
    ]
    results["targets"] = targets
    common.print_targets(targets)


if __name__ == "__main__":
    main()
