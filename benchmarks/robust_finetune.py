"""Swap-robust fine-tuning on a demo store: how many re-learned English packs should step 3 read?

Step 3 normally reads English through the English pack alone; a pack that step 2 re-learns then
lands in a slightly different basis, and the classifier loses part of what it learned when that pack
is swapped in. Swap-robust fine-tuning reads its batches through the English pack and K re-learned
English packs in turn (the demo's `robust_packs`). This benchmark takes a finished `embswap demo`
folder (its body, English pack and language packs stay fixed), fine-tunes the genre task with
K = 0, 1, 2 ... robust packs and several seeds, and scores each task model beside its controls:
English in-language, clean self-transfer through packs it never saw (the demo's `en-relearned` and
more seeds of it), zero-shot in every demo language and the untrained-pack control.

    make demo && python benchmarks/robust_finetune.py --demo embswap-demo      # about 25 min on 2 cores
    python benchmarks/robust_finetune.py --demo embswap-demo --robust 0,1 --seeds 0
    python benchmarks/robust_finetune.py --quick                                # smoke run (quick demo), ~3 min

Robust and self-transfer packs are learned exactly like the demo's `en-relearned` pack (random rows,
the demo's objective, English text of other translations) with their own seeds, and kept in the
demo's store; task models go to its store as `genre~robustK~sS` (the demo's own task is reused for
its own K and seed). Writes benchmarks/results/robust_finetune[.quick].{json,md,png}.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, fields
from pathlib import Path

import _common
from _tables import markdown_table

from embswap.demo import Demo, DemoConfig, _bible, run_demo
from embswap.diagnose import self_transfer
from embswap.errors import EmbswapError
from embswap.evaluate import evaluate

NAME = "robust_finetune"
SELF_SEED_BASE = 100  # extra self-transfer packs take seeds 100, 101, ...: never a robust pack's seed


def arguments():
    p = _common.parser(__doc__.split("\n\n")[0])
    p.set_defaults(threads=2)
    p.add_argument(
        "--demo",
        type=Path,
        default=None,
        help="a finished `embswap demo` folder (default: quick: one built in --work; else embswap-demo)",
    )
    p.add_argument("--robust", default=None, help="comma-separated K values (default 0,1,2; quick: 0,1)")
    p.add_argument("--seeds", default=None, help="fine-tuning seeds (default 0,1; quick: 0)")
    p.add_argument(
        "--self-packs",
        type=int,
        default=None,
        help="unseen re-learned English packs each task model is scored with (default 3; quick: 1)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=_common.REPO / "benchmarks" / "work" / NAME,
        help="where --quick builds its demo (reused)",
    )
    args = p.parse_args()
    args.ks = [int(x) for x in (args.robust or ("0,1" if args.quick else "0,1,2")).split(",")]
    args.seed_list = [int(x) for x in (args.seeds or ("0" if args.quick else "0,1")).split(",")]
    args.n_self = args.self_packs if args.self_packs is not None else (1 if args.quick else 3)
    if min(args.ks) < 0 or args.n_self < 1:
        p.error("--robust takes K >= 0 and --self-packs at least 1")
    return args


def demo_config(folder: Path) -> DemoConfig:
    """The configuration the demo in ``folder`` was built with (its demo_config.json)."""
    path = folder / "demo_config.json"
    if not path.is_file() or not (folder / "store" / "body").exists():
        raise EmbswapError(
            f"{folder} is not a finished demo folder (no demo_config.json or store/body); "
            "run `embswap demo -o FOLDER` first"
        )
    saved = json.loads(path.read_text(encoding="utf-8"))
    known = {f.name for f in fields(DemoConfig)}
    return DemoConfig(**{k: v for k, v in saved.items() if k in known and k != "extra"})


def self_pack_names(n: int) -> list[tuple[str, int | None]]:
    """(store name, seed) of the unseen self-transfer packs: the demo's own first (its seed), then more."""
    return [("en-relearned", None)] + [(f"en-relearned-{SELF_SEED_BASE + j}", SELF_SEED_BASE + j) for j in range(n - 1)]


def task_model(demo: Demo, k: int, seed: int) -> str:
    """Store name of the genre task fine-tuned with ``k`` robust packs and ``seed`` (trained when missing)."""
    cfg = demo.config
    if k == cfg.robust_packs and seed == cfg.seed:
        return "genre"  # the demo's own task model
    name = f"genre~robust{k}~s{seed}"
    robust = demo.robust_names(k)
    for i, pack in enumerate(robust, start=1):
        demo.transfer("en", pack, cfg.seed + i)
    demo.finetune(name, robust, seed)
    return name


def score(demo: Demo, task_name: str, rows: dict, selves: list[str]) -> dict:
    store, cfg = demo.store, demo.config
    task, body = store.task(task_name), store.body
    swaps = [self_transfer(body, store.pack("en"), task, rows["en"], store.pack(name)) for name in selves]
    languages = {}
    for lang in cfg.languages:
        zero = evaluate(body, store.pack(lang), task, rows[lang])["accuracy"]
        control = evaluate(body, demo.untrained_pack(lang), task, rows[lang])["accuracy"]
        languages[lang] = {"accuracy": zero, "untrained_pack": control}
    return {
        "task": task_name,
        "english": swaps[0]["l1"]["accuracy"],
        "self_transfer": [swap["self_transfer"]["accuracy"] for swap in swaps],
        "languages": languages,
    }


def summarise(cells: list[dict], majority: float) -> dict:
    """Means over fine-tuning seeds (and self-transfer packs) of one K."""

    def mean(values):
        return sum(values) / len(values)

    english = mean([c["english"] for c in cells])
    selves = [s for c in cells for s in c["self_transfer"]]
    out = {
        "english": english,
        "self_transfer": mean(selves),
        "self_transfer_min": min(selves),
        "self_transfer_max": max(selves),
        "self_ratio": mean(selves) / english if english else 0.0,
        "languages": {},
    }
    for lang in cells[0]["languages"]:
        zero = mean([c["languages"][lang]["accuracy"] for c in cells])
        control = mean([c["languages"][lang]["untrained_pack"] for c in cells])
        out["languages"][lang] = {"accuracy": zero, "untrained_pack": control, "margin": zero - max(control, majority)}
    return out


def render_markdown(report: dict) -> str:
    languages = report["languages"]
    columns = [
        "robust packs K",
        "English",
        "clean self-transfer (min-max)",
        "% of English",
        *(f"{lang} (margin)" for lang in languages),
        "untrained pack " + " / ".join(languages),
    ]
    rows = []
    for k, s in report["summary"].items():
        rows.append(
            [
                k,
                f"{s['english']:.1f}",
                f"{s['self_transfer']:.1f} ({s['self_transfer_min']:.1f}-{s['self_transfer_max']:.1f})",
                f"{100 * s['self_ratio']:.0f} %",
                *(
                    f"{s['languages'][lang]['accuracy']:.1f} ({s['languages'][lang]['margin']:+.1f})"
                    for lang in languages
                ),
                " / ".join(f"{s['languages'][lang]['untrained_pack']:.1f}" for lang in languages),
            ]
        )
    env = report["environment"]
    quick = " (quick smoke run: numbers are not meaningful)" if report["quick"] else ""
    notes = [
        f"Genre accuracy (%) on {report['n_test']} held-out examples per language, mean over fine-tuning seeds "
        f"{', '.join(map(str, report['seeds']))}; the margin is over the better control (majority "
        f"{report['majority']:.1f} %, untrained pack).",
        f"Clean self-transfer: {report['n_self']} English pack(s) re-learned like the demo's en-relearned "
        "(random rows, the demo's objective, other English translations) with seeds no robust pack uses, "
        "each swapped into every task model; never seen by fine-tuning (embswap refuses one that was).",
        "Robust packs: en-robust-1..K, learned the same way with seeds 1..K; fine-tuning reads the English pack and "
        "these in turn, batch by batch, for the same number of steps as K = 0.",
        f"Demo folder: {report['demo']} (body, English and language packs unchanged). Recipe: objective "
        f"{report['config']['objective']}, init {report['config']['init']}, {report['config']['transfer_steps']} "
        f"pack steps, {report['config']['finetune_steps']} fine-tuning steps.",
        f"Machine: {env['cpu']}, {env['cores']} cores, {env['torch_threads']} torch threads; load average "
        f"{env['load_average_start']} at the start; wall {report['wall_minutes']:.1f} min.",
    ]
    return (
        f"# Swap-robust fine-tuning: re-learned English packs read by step 3{quick}\n\n"
        + markdown_table(columns, rows)
        + "\n"
        + "\n".join(f"- {n}" for n in notes)
        + "\n"
    )


def plot(report: dict, path: Path) -> None:
    plt = _common.pyplot()
    ks = list(report["summary"])
    summary = report["summary"]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    x = range(len(ks))
    ax.plot(x, [summary[k]["english"] for k in ks], marker="o", label="English in-language")
    ax.plot(x, [summary[k]["self_transfer"] for k in ks], marker="o", label="clean self-transfer")
    for lang in report["languages"]:
        ax.plot(x, [summary[k]["languages"][lang]["accuracy"] for k in ks], marker=".", label=f"{lang} zero-shot")
    ax.plot(
        x,
        [max(summary[k]["languages"][lang]["untrained_pack"] for lang in report["languages"]) for k in ks],
        linestyle="--",
        color="grey",
        label="best untrained-pack control",
    )
    ax.set_xticks(list(x), [f"K = {k}" for k in ks])
    ax.set_ylabel("genre accuracy (%)")
    ax.set_title("Swap-robust fine-tuning: robust packs K" + (" (quick)" if report["quick"] else ""))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = arguments()
    _common.setup(args)
    environment = _common.environment(args)
    started = time.perf_counter()
    folder = args.demo or (args.work / "quick-demo" if args.quick else Path("embswap-demo"))
    if args.quick and not (folder / "store" / "body").exists():
        run_demo(folder, DemoConfig.quick_config(), log=lambda msg: print(f"  {msg}", flush=True))
    cfg = demo_config(folder)
    demo = Demo(folder, cfg, log=lambda msg: print(f"  {msg}", flush=True))
    selves = []
    for name, seed in self_pack_names(args.n_self):
        demo.transfer("en", name, seed)
        selves.append(name)
    rows = demo.test_rows()
    from embswap.evaluate import majority_baseline

    majority = majority_baseline(_bible().genre_examples("en", "train"), rows["en"])["accuracy"]
    cells: dict[int, list[dict]] = {}
    for k in args.ks:
        for seed in args.seed_list:
            name = task_model(demo, k, seed)
            print(f"scoring {name}", flush=True)
            cells.setdefault(k, []).append({"seed": seed, **score(demo, name, rows, selves)})
    report = {
        "benchmark": NAME,
        "quick": args.quick,
        "environment": environment,
        "demo": str(folder),
        "config": {k: v for k, v in json.loads(json.dumps(asdict(cfg), default=list)).items() if k != "extra"},
        "languages": list(cfg.languages),
        "seeds": args.seed_list,
        "n_self": args.n_self,
        "n_test": len(rows["en"]),
        "majority": majority,
        "cells": {str(k): v for k, v in cells.items()},
        "summary": {str(k): summarise(v, majority) for k, v in cells.items()},
        "wall_minutes": (time.perf_counter() - started) / 60,
    }
    _common.write_report(args, NAME, report, render_markdown, plot)


if __name__ == "__main__":
    main()
