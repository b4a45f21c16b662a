"""Where step 2's time goes: the profiling experiments behind embswap's step-2 choices.

    nice -n 15 python benchmarks/transfer_speed_profile.py            # default size (a few minutes)
    nice -n 15 python benchmarks/transfer_speed_profile.py --quick    # smoke run (under a minute)

On the tiny body of benchmarks/transfer_speed.py (same cases, same contenders):

- **profile**: seconds per phase of one step and the top operators, plain transformers' full-sequence
  logits against embswap's masked-only ones (why step 2 computes logits only where it masks).
- **row_sparse**: which embedding rows get a gradient in one step (why row-sparse updates are not used:
  the tied output layer gives every row one).
- **compile** (default size only): ``torch.compile`` on the encoder against eager (why it is not used).
- **optimizer**: AdamW over a vocabulary x hidden matrix, per-tensor loop against the fused kernel (why
  step 2 uses the fused one).

Writes benchmarks/results/transfer_speed_profile[.quick].json; the throughput, memory and quality
comparison itself is benchmarks/transfer_speed.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transfer_speed import LR, Case, contender  # noqa: E402

from embswap.architectures import mlm_head_logits  # noqa: E402
from embswap.train.mlm import IGNORE_INDEX, MLMBatches, encoder_states  # noqa: E402

NAME = "transfer_speed_profile"

# The tiny case of transfer_speed.py's headline (shape, vocab, seq, batch, steps built for), and the
# AdamW matrices (vocabulary, hidden).
QUICK = {"case": ("tiny", 32000, 128, 8, 3), "compile": False, "optimizer": [(32000, 256)]}
DEFAULT = {
    "case": ("tiny", 32000, 128, 32, 4),
    "compile": True,
    "optimizer": [(32000, 256), (32000, 768), (250000, 256)],
}


def phase_profile(case: Case) -> dict:
    """Seconds per phase of one step (after a warm-up step): baseline A's full logits vs embswap's masked ones."""
    from torch.profiler import ProfilerActivity, profile

    out = {"config": case.label, "load_average": common.load_average()}
    for mode in ("transformers", "embswap"):
        runner = contender("transformers", case, 4)  # the same frozen model; only the loss differs
        model, params = runner.model, runner.params
        batches = MLMBatches(case.sequences, case.tokenizer, batch_size=case.batch_size, seed=0)

        def step(i, timings):
            batch = batches(i)
            marks = [time.perf_counter()]
            hidden = encoder_states(model, batch)
            marks.append(time.perf_counter())
            labels = batch["labels"]
            if mode == "embswap":
                where = labels != IGNORE_INDEX
                loss = F.cross_entropy(mlm_head_logits(model, hidden[where]), labels[where])
            else:
                logits = mlm_head_logits(model, hidden)
                loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
            marks.append(time.perf_counter())
            loss.backward()
            marks.append(time.perf_counter())
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            runner.optimizer.step()
            runner.optimizer.zero_grad(set_to_none=True)
            marks.append(time.perf_counter())
            for key, a, b in zip(("encoder forward", "MLM head + loss", "backward", "optimizer"), marks, marks[1:]):
                timings[key] = timings.get(key, 0.0) + b - a

        step(0, {})
        timings: dict[str, float] = {}
        step(1, timings)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(2, {})
        ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
        total = sum(e.self_cpu_time_total for e in prof.key_averages())
        out[mode] = {
            "phases_s": {k: round(v, 3) for k, v in timings.items()},
            "top_ops": [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3)} for e in ops],
        }
    return out


def compile_check(case: Case, steps: int = 3) -> dict:
    """torch.compile on the encoder: one-off compile time and step time against eager."""
    runner = contender("transformers", case, steps * 2 + 2)
    model = runner.model
    batches = MLMBatches(case.sequences, case.tokenizer, batch_size=case.batch_size, seed=0)
    compiled = torch.compile(model.base_model)

    def step(i, encoder):
        batch = batches(i)
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        where = batch["labels"] != IGNORE_INDEX
        loss = F.cross_entropy(mlm_head_logits(model, hidden[where]), batch["labels"][where])
        loss.backward()
        runner.optimizer.step()
        runner.optimizer.zero_grad(set_to_none=True)

    first = common.clock(lambda: step(0, compiled))
    eager, fused = [], []
    for i in range(1, steps + 1):
        eager.append(common.clock(lambda i=i: step(i, model.base_model)))
        fused.append(common.clock(lambda i=i: step(i, compiled)))
    return {
        "config": case.label,
        "first_compiled_step_s": round(first, 1),
        "eager_step_s": round(common.median(eager), 3),
        "compiled_step_s": round(common.median(fused), 3),
        "speedup": round(common.median(eager) / common.median(fused), 3),
        "load_average": common.load_average(),
    }


def optimizer_steps(shapes, repeats: int = 5) -> list[dict]:
    """AdamW over a vocabulary x hidden matrix and its bias: the per-tensor loop vs the fused kernel."""
    out = []
    for vocab, hidden in shapes:
        row = {"matrix": f"{vocab} x {hidden}", "load_average": common.load_average()}
        for kind in ("foreach", "fused"):
            params = [torch.nn.Parameter(torch.randn(vocab, hidden)), torch.nn.Parameter(torch.randn(vocab))]
            optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, **{kind: True})
            times = []
            for _ in range(repeats):
                for p in params:
                    p.grad = torch.randn_like(p)
                times.append(common.clock(optimizer.step))
            row[f"{kind}_ms"] = round(common.median(times[1:]) * 1000, 1)
            del params, optimizer
        row["speedup"] = round(row["foreach_ms"] / row["fused_ms"], 2)
        out.append(row)
    return out


def touched_rows(case: Case) -> dict:
    """Which embedding rows get a gradient in one embswap step: the case for row-sparse updates."""
    runner = contender("transformers", case, 2)
    model = runner.model
    batch = MLMBatches(case.sequences, case.tokenizer, batch_size=case.batch_size, seed=0)(0)
    hidden = encoder_states(model, batch)
    where = batch["labels"] != IGNORE_INDEX
    F.cross_entropy(mlm_head_logits(model, hidden[where]), batch["labels"][where]).backward()
    grad = model.get_input_embeddings().weight.grad
    return {
        "config": case.label,
        "rows_in_batch": int(torch.unique(batch["input_ids"]).numel()),
        "rows": grad.shape[0],
        "rows_with_gradient": int((grad.abs().sum(1) > 0).sum()),
        "why": "the output layer is tied to the matrix, and the softmax gives every vocabulary row a gradient",
    }


def main() -> None:
    args = common.parser(__doc__.splitlines()[0]).parse_args()
    common.setup(args)
    sizes = QUICK if args.quick else DEFAULT
    started = time.perf_counter()
    results = {"benchmark": NAME, "quick": args.quick, "lr": LR, "environment": common.environment(args)}
    case = Case(*sizes["case"])
    results["profile"] = phase_profile(case)
    results["row_sparse"] = touched_rows(case)
    if sizes["compile"]:
        results["compile"] = compile_check(case)
    results["optimizer"] = optimizer_steps(sizes["optimizer"])
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(
        common.table(
            "AdamW step over the matrix and bias (ms)",
            ["matrix", "per-tensor loop", "fused", "speedup"],
            [[o["matrix"], o["foreach_ms"], o["fused_ms"], o["speedup"]] for o in results["optimizer"]],
        )
    )
    print(f"wrote {common.save(args, NAME, results)}")


if __name__ == "__main__":
    main()
