"""The paper's comparison table at laptop scale, on Bible text (docs/results.md#reproduction).

Systems: MonoTrans as the paper ran it (random init, mlm), MonoTrans with embswap's default
monolingual recipe (BEST_MONOLINGUAL of quality_ablation.py: one place decides it), +pos, +noise,
+adapters, MonoTrans + mlm+align (it reads parallel text, which the paper's systems do not), JointPair
with a joint and a disjoint vocabulary (one body pretrained on English + the L2, per L2) and
JointMulti (one body on English + every L2). Tasks, fine-tuned on English only and scored zero-shot
on held-out books: genre (6 classes) in German, French, Russian, Chinese and Hindi, and paraphrase
(two translations of one verse vs a neighbouring verse) in German and French (Spanish and Italian,
which also have two translations, with --languages: each adds two JointPair bodies). Equal compute:
a JointPair body pretrains for the English body's budget plus one pack's; JointMulti for the
English body's plus one pack per L2.

Also measured, which the paper did not: how many L2 tokens / steps a pack needs to reach 90 % of
its final German zero-shot accuracy (one longer transfer, scored after every segment), for the
random, overlap and dictionary inits.

    python benchmarks/reproduce.py                  # 44 min on 2 CPU cores (2 jobs): too small to transfer
    # the demo's budget, where the swap carries genre: 101 min on 2 cores with the demo's body
    python benchmarks/reproduce.py --scale 6.67 --body-from embswap-demo --jointpair-languages de --curve 6x50
    # the committed results: the demo's budget, every JointPair body, 2 seeds; ~10 min on one H100 + 16 cores
    python benchmarks/reproduce.py --scale 6.67 --curve 6x50 --seeds 0,1 --jobs 12
    python benchmarks/reproduce.py --quick          # CI smoke run, under 2 minutes
    python benchmarks/reproduce.py --systems paper,jointpair-joint --languages de,ru

Artifacts live in --work (default benchmarks/work/, shared with quality_ablation.py when the budgets
match); a re-run reuses them. Writes benchmarks/results/reproduce.{md,json,png}.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import _common
from _dictionaries import dictionary_for
from _grid import Grid
from _tables import first_reaching, format_cell, markdown_table, mean_and_values
from _variants import PAPER_NOISE, Budget, Variant, task_recipe
from quality_ablation import BEST_MONOLINGUAL, WORK

from embswap.demo import DemoConfig

NAME = "reproduce"
GENRE_LANGUAGES = ("de", "fr", "ru", "zh", "hi")  # Latin, Latin, Cyrillic, Han, Devanagari
# Of the languages with two translations (de, fr, es, it), the two that genre also uses: es and it
# would add four JointPair bodies, a third of the default run's time (--languages brings them back).
PARAPHRASE_LANGUAGES = ("de", "fr")
TASKS = {"genre": GENRE_LANGUAGES, "paraphrase": PARAPHRASE_LANGUAGES}
CURVE_LANGUAGE, CURVE_TASK = "de", "genre"

SYSTEMS: dict[str, Variant] = {
    "paper": Variant("MonoTrans (paper-literal)"),
    "defaults": replace(BEST_MONOLINGUAL, system="MonoTrans (embswap defaults, monolingual)"),
    "pos": Variant("MonoTrans +pos", pos=True),
    "noise": Variant("MonoTrans +noise", noise=PAPER_NOISE),
    "adapters": Variant("MonoTrans +adapters", adapters=True),
    "mlm+align": Variant("MonoTrans + mlm+align (uses parallel text)", objective="mlm+align", init="overlap"),
    "jointpair-joint": Variant("JointPair, joint vocabulary", body="pair-joint"),
    "jointpair-disjoint": Variant("JointPair, disjoint vocabulary", body="pair-disjoint"),
    "jointmulti": Variant("JointMulti (joint 4V vocabulary)", body="multi"),
}
# The paper's averages (XNLI accuracy / XQuAD F1; Artetxe et al., 2020): other tasks and languages and a far
# larger scale, quoted for orientation only. JointMulti: the paper's JointMulti-32k.
PAPER_AVERAGES = {
    "paper": "67.8 / 61.1",
    "pos": "69.1 / 56.8",
    "noise": "70.0 / 57.8",
    "adapters": "69.5 / 66.8",
    "jointpair-disjoint": "71.1 / 67.0",
    "jointmulti": "65.0 / 54.5",
}
CURVE_INITS = {"random": {}, "overlap": {}, "dictionary": {"dictionary_size": 1000}}
QUICK_LANGUAGES = ("de", "ru")


# The default run is this fraction of the demo's step budgets (English body 210 steps, packs 22, tasks
# 30): 9 systems with 11 joint bodies, 24 packs and 20 tasks fit in an hour on 2 cores only so (0.35
# and four more joint bodies took 120 min). It is far too small for transfer: raise --scale where
# there is time (--scale 6.67 is the demo's budget, where the swap carries the genre task).
DEMO_FRACTION = 0.15


def budget_for(quick: bool, scale: float) -> Budget:
    if quick:
        return Budget.from_demo(DemoConfig.quick_config()).scaled(scale)
    # Rounded so that --scale 6.67 is the demo's budget exactly (1,400 body steps, not 1,401): a body the
    # demo pretrained then matches it step for step (--body-from).
    return Budget.from_demo(DemoConfig(), eval_examples=400).scaled(round(DEMO_FRACTION * scale, 2))


def curve_variants() -> dict[str, Variant]:
    """The default recipe with each init: which anchors a pack starts from, on the same curve."""
    out = {}
    for init, extra in CURVE_INITS.items():
        fields = {"init": init, "dictionary_size": extra.get("dictionary_size")}
        out[init] = replace(BEST_MONOLINGUAL, system=f"init {init}", **fields)
    return out


def arguments():
    p = _common.parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--results",
        dest="out",
        type=Path,
        default=_common.RESULTS,
        help="folder for the .md/.json/.png results (default benchmarks/results)",
    )
    p.add_argument("--work", type=Path, default=WORK, help="folder for the artifacts (reused across runs)")
    p.add_argument("--body-from", type=Path, help="a demo folder (or store) whose English body to reuse")
    p.add_argument("--systems", help=f"comma-separated systems (default all): {','.join(SYSTEMS)}")
    p.add_argument(
        "--languages",
        help="comma-separated L2s (default: genre de,fr,ru,zh,hi; paraphrase de,fr; "
        f"quick: {','.join(QUICK_LANGUAGES)}); paraphrase keeps those with two "
        "translations",
    )
    p.add_argument(
        "--jointpair-languages",
        default="all",
        help="L2s that get JointPair bodies (two each, the costliest systems: default all; e.g. de)",
    )
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--jobs", type=int, default=2, help="processes building artifacts in parallel (default 2)")
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help=f"multiply every step budget (default: {DEMO_FRACTION:g} of the demo's; 6.67: the demo's)",
    )
    p.add_argument(
        "--curve",
        default=None,
        help="SEGMENTSxSTEPS of the German learning curve (default 6x50, steps times --scale; quick 2x5)",
    )
    p.add_argument("--no-curve", action="store_true", help="skip the learning curves")
    args = p.parse_args()
    args.system_ids = args.systems.split(",") if args.systems else list(SYSTEMS)
    unknown = [s for s in args.system_ids if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown systems {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    chosen = args.languages.split(",") if args.languages else (QUICK_LANGUAGES if args.quick else None)
    if chosen is not None:
        from embswap.data.bible import LANGUAGES

        unknown = [lang for lang in chosen if lang not in LANGUAGES or lang == "en"]
        if unknown:
            p.error(f"unknown L2 {', '.join(unknown)}; the corpus has {', '.join(x for x in LANGUAGES if x != 'en')}")
    args.task_languages = {
        task: tuple(langs if chosen is None else _select(task, chosen)) for task, langs in TASKS.items()
    }
    every = sorted({lang for langs in args.task_languages.values() for lang in langs})
    args.pair_languages = tuple(
        every
        if args.jointpair_languages == "all"
        else [lang for lang in args.jointpair_languages.split(",") if lang in every]
    )
    if not args.pair_languages and any(s.startswith("jointpair") for s in args.system_ids):
        p.error(
            f"--jointpair-languages {args.jointpair_languages}: none of them is run; choose from "
            f"{','.join(every)} or all"
        )
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    default_curve = "2x5" if args.quick else f"6x{max(1, round(50 * args.scale))}"
    segments, _, steps = (args.curve or default_curve).partition("x")
    args.curve_shape = (int(segments), int(steps))
    return args


def _select(task: str, chosen: Sequence[str]) -> list[str]:
    """The chosen L2s a task can use: paraphrase needs two translations of the language."""
    from embswap.data.bible import LANGUAGES

    return [lang for lang in chosen if task != "paraphrase" or len(LANGUAGES[lang]) >= 2]


def register(grid: Grid, args) -> None:
    for system in args.system_ids:
        for seed in args.seed_list:
            variant = SYSTEMS[system].with_seed(seed)
            for task, languages in args.task_languages.items():
                built = built_languages(args, system, languages)
                for language in set(languages) - set(built):
                    grid.unavailable[(variant, language)] = "not run (--jointpair-languages)"
                if built:
                    grid.require(variant, task, built, controls=system == "paper")
    if args.curve_shape[0] > 0 and not args.no_curve:
        for variant in curve_variants().values():
            for seed in args.seed_list:
                grid.require_curve(variant.with_seed(seed), CURVE_TASK, CURVE_LANGUAGE)


def built_languages(args, system: str, languages: Sequence[str]) -> list[str]:
    """The languages a system is run on: JointPair only on --jointpair-languages (a body pair per L2)."""
    return [lang for lang in languages if not system.startswith("jointpair") or lang in args.pair_languages]


def task_table(grid: Grid, args, task: str) -> dict:
    """{system: {"cells": {lang: summary}, "english": summary, "average": ..., "per_seed": ...}}."""
    languages = args.task_languages[task]
    out = {}
    for system in args.system_ids:
        variants = [SYSTEMS[system].with_seed(seed) for seed in args.seed_list]
        per_seed = {v.seed: {lang: grid.score(v, task, lang, "pack") for lang in languages} for v in variants}
        # JointPair has one body (and task model) per L2: its English score is the mean over them.
        built = built_languages(args, system, languages)
        english = [
            sum(grid.score(v, task, lang, "english")["accuracy"] for lang in built) / len(built) if built else None
            for v in variants
        ]
        cells = {}
        for lang in languages:
            values = [per_seed[seed][lang] for seed in args.seed_list]
            note = next((c["note"] for c in values if "note" in c), None)
            cells[lang] = {"note": note} if note else mean_and_values([c["accuracy"] for c in values])
        measured = [c["mean"] for c in cells.values() if c.get("mean") is not None]
        out[system] = {
            "system": SYSTEMS[system].system,
            "cells": cells,
            "per_seed": per_seed,
            "english": mean_and_values(english),
            "average": round(sum(measured) / len(measured), 2) if measured else None,
            "languages_averaged": len(measured),
            "minutes": mean_and_values([grid.row_minutes(v, task) for v in variants]),
            "paper_average": PAPER_AVERAGES.get(system),
        }
        if system == "paper":
            out[system]["untrained_pack"] = {
                lang: mean_and_values([grid.score(v, task, lang, "random")["accuracy"] for v in variants])
                for lang in languages
            }
    return out


def curves(grid: Grid, args) -> dict:
    if args.curve_shape[0] == 0 or args.no_curve:
        return {}
    out = {}
    for init, variant in curve_variants().items():
        runs = {}
        for seed in args.seed_list:
            points = grid.curve(variant.with_seed(seed), CURVE_TASK, CURVE_LANGUAGE)
            runs[seed] = points if isinstance(points, dict) else {"points": points, "to_90": first_reaching(points)}
        out[init] = runs
    return out


def _average_cell(row: dict, n: int) -> str:
    if row["average"] is None:
        return "-"
    partial = "" if row["languages_averaged"] == n else f" ({row['languages_averaged']} of {n})"
    return f"{row['average']:.1f}{partial}"


def render_markdown(report: dict) -> str:
    parts = [
        "# MonoTrans at laptop scale: the paper's comparison on Bible text"
        + (" (quick smoke run: numbers are not meaningful)" if report["quick"] else ""),
        "",
    ]
    for task, table in report["tasks"].items():
        languages = report["languages"][task]
        if not languages:
            continue
        heading = {
            "genre": "Genre (6 classes, held-out books)",
            "paraphrase": f"Paraphrase (languages with two translations only: {', '.join(PARAPHRASE_LANGUAGES)})",
        }[task]
        columns = [
            "system",
            "English (in-language)",
            *languages,
            "average",
            "minutes",
            "paper avg (XNLI acc / XQuAD F1)",
        ]
        rows = [
            [
                r["system"],
                format_cell(r["english"]),
                *(format_cell(r["cells"][lang]) for lang in languages),
                _average_cell(r, len(languages)),
                format_cell(r["minutes"]),
                r["paper_average"] or "-",
            ]
            for r in table.values()
        ]
        if "paper" in table and "untrained_pack" in table["paper"]:
            control = table["paper"]["untrained_pack"]
            rows.append(
                [
                    "control: untrained pack (paper's task model)",
                    "-",
                    *(format_cell(control[lang]) for lang in languages),
                    "-",
                    "-",
                    "-",
                ]
            )
        rows.append(
            ["control: majority class", f"{report['majority'][task]:.1f}", *(["-"] * len(languages)), "-", "-", "-"]
        )
        parts += [f"## {heading}", "", markdown_table(columns, rows)]
    if report["curves"]:
        parts += ["## How many German tokens a pack needs (genre zero-shot, default recipe, by init)", ""]
        rows = []
        for init, runs in report["curves"].items():
            for seed, run in runs.items():
                if "note" in run:
                    rows.append([init, seed, run["note"], "-", "-", "-"])
                    continue
                final, to_90 = run["points"][-1], run["to_90"]
                rows.append(
                    [
                        init,
                        seed,
                        f"{run['points'][0]['accuracy']:.1f}",
                        f"{final['accuracy']:.1f}",
                        f"{to_90['steps']} steps / {to_90['tokens']:,} tokens",
                        f"{final['steps']} steps / {final['tokens']:,} tokens",
                    ]
                )
        parts.append(
            markdown_table(["init", "seed", "untrained", "final", "90 % of final reached at", "curve length"], rows)
        )
    b, e = report["budget"], report["equal_compute"]
    paraphrase_steps, _, paraphrase_lr = task_recipe(
        Budget(task_steps=b["task_steps"], task_minutes=b["task_minutes"], finetune_lr=b["finetune_lr"]), "paraphrase"
    )
    parts += [
        "## How it was run",
        "",
        *(
            f"- {note}"
            for note in [
                f"Budgets (steps; minutes are only safety caps): English body {e['english']}; each pack {b['pack_steps']} "
                f"steps of {b['batch_size']} × {b['mlm_seq_len']} tokens; each genre task {b['task_steps']} steps of "
                f"{b['batch_size']} examples (lr {b['finetune_lr']:g}), each paraphrase task "
                f"{paraphrase_steps} (lr {paraphrase_lr:g}: "
                f"it compares two sentences and needs more, gentler steps); {report['n_test']} test examples per "
                "language (paraphrase: half as many verses, a positive and a negative pair each).",
                f"Equal compute, in steps of one {e['tokens_per_step']:,}-token MLM batch: JointPair pretrains "
                f"{e['jointpair']}; JointMulti {e['jointmulti']}. Vocabularies: "
                "JointPair joint 2V, disjoint V + V, JointMulti joint 4V (V = "
                f"{b['vocab_size']:,}); MonoTrans packs V each.",
                "+noise: N(0, 0.075²) on the word, position and segment embeddings in fine-tuning (the paper's value). "
                "+adapters: a Houlsby language adapter learned with the pack, plugged in with it; fine-tuning as the paper's.",
                f"MonoTrans (embswap defaults): {BEST_MONOLINGUAL.system}, taken from quality_ablation.py. "
                "A language without a bilingual dictionary shows n/a there, never a substitute.",
                "Learning curve: one transfer at a constant learning rate, resumed segment by segment, scored after each; "
                "'90 % reached at' is the first checkpoint scoring at least 0.9 × the final accuracy.",
                f"Command: `{report['environment']['command']}`"
                + (
                    f"; the English body was copied from the demo's store ({report['body_from']}), pretrained at the "
                    "same budget and recipe."
                    if report["body_from"]
                    else "."
                ),
                "JointPair bodies: "
                + (", ".join(report["jointpair_languages"]) or "none")
                + " (--jointpair-languages; other cells say 'not run').",
                "Dictionaries: "
                + "; ".join(f"{lang}: {label}" for lang, label in report["dictionaries"].items())
                + ".",
                f"Minutes: wall time of the system's packs (or joint body), task and scores. Seeds: "
                f"{', '.join(str(s) for s in report['seeds'])}. Machine: {report['environment']['cpu']}"
                f"{_common.accelerator_clause(report['environment'])}, {report['jobs']} job(s); load average "
                f"{report['environment']['load_average_start']} → {report['load_average_end']}; wall "
                f"{report['wall_minutes']:.1f} min (estimated {report['estimate']['wall_minutes']}).",
                *_common.run_notes(report["environment"]),
            ]
        ),
    ]
    return "\n".join(parts) + "\n"


def plot(report: dict, path: Path) -> None:
    plt = _common.pyplot()
    panels = [task for task, langs in report["languages"].items() if langs] + (["curve"] if report["curves"] else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.6 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        if panel == "curve":
            for init, runs in report["curves"].items():
                for seed, run in runs.items():
                    if "points" not in run:
                        continue
                    xs = [p["tokens"] for p in run["points"]]
                    accuracy = [p["accuracy"] for p in run["points"]]
                    line = ax.plot(xs, accuracy, marker="o", label=f"{init} (seed {seed})")
                    ax.axvline(run["to_90"]["tokens"], color=line[0].get_color(), linestyle=":", linewidth=1)
            ax.set_xlabel("German tokens seen by the pack (dotted: 90 % of final reached)")
            ax.set_ylabel("German genre zero-shot accuracy (%)")
            ax.set_title("Learning curve by init")
            ax.legend(fontsize=7)
            continue
        table = report["tasks"][panel]
        names = [row["system"] for row in table.values()]
        ax.barh(range(len(names)), [row["average"] or 0.0 for row in table.values()], color="tab:blue")
        ax.axvline(report["majority"][panel], color="grey", linestyle="--", label="majority")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"{panel}: average zero-shot accuracy (%)")
        ax.legend(fontsize=7)
    fig.suptitle("MonoTrans at laptop scale" + (" (quick)" if report["quick"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def equal_compute(grid: Grid) -> dict:
    """The joint bodies' budgets, in steps of the same MLM batch (equal tokens) as the English body's."""
    steps, minutes = grid.english_cost()
    b = grid.budget
    pair, multi = grid.joint_budget(Variant(body="pair-joint"))[0], grid.joint_budget(Variant(body="multi"))[0]
    n = len(grid.multi_languages)
    return {
        "english": f"{steps} steps ({minutes:.1f} min)",
        "jointpair": f"{pair} steps (English {steps} + one pack {b.pack_steps})",
        "jointmulti": f"{multi} steps (English {steps} + {n} packs × {b.pack_steps})",
        "tokens_per_step": b.tokens_per_step,
    }


def main() -> None:
    args = arguments()
    _common.setup(args)
    environment = _common.environment(args)
    budget = budget_for(args.quick, args.scale)
    all_languages = sorted({lang for langs in args.task_languages.values() for lang in langs})
    grid = Grid(
        args.work,
        budget,
        body_from=args.body_from,
        genre_languages=args.task_languages["genre"],
        multi_languages=all_languages,
        jobs=args.jobs,
        threads=args.threads,
        curve=args.curve_shape,
    )
    register(grid, args)
    estimate = grid.estimate()
    print(
        f"budget: English body {budget.pretrain_steps} steps, packs {budget.pack_steps}, tasks "
        f"{budget.task_steps}, {budget.eval_examples} test examples; work folder {grid.folder}"
    )
    print(
        f"estimate: about {estimate['wall_minutes']} min wall ({estimate['compute_minutes']} compute-minutes "
        f"over {args.jobs} job(s)); to build {estimate['to_build']}",
        flush=True,
    )
    started = time.perf_counter()
    grid.run()
    report = {
        "benchmark": NAME,
        "quick": args.quick,
        "environment": environment,
        "budget": budget.describe(),
        "equal_compute": equal_compute(grid),
        "seeds": args.seed_list,
        "jobs": args.jobs,
        "estimate": estimate,
        "languages": {task: list(langs) for task, langs in args.task_languages.items()},
        "majority": {task: grid.majority(task)["accuracy"] for task, langs in args.task_languages.items() if langs},
        "n_test": grid.budget.eval_examples,
        "curve_shape": list(args.curve_shape),
        "jointpair_languages": list(args.pair_languages),
        "body_from": str(args.body_from or ""),
        "dictionaries": {lang: (dictionary_for(lang) or (None, "none available"))[1] for lang in all_languages},
        "tasks": {task: task_table(grid, args, task) for task, langs in args.task_languages.items() if langs},
        "curves": curves(grid, args),
    }
    report["wall_minutes"] = (time.perf_counter() - started) / 60
    _common.write_report(args, NAME, report, render_markdown, plot)


if __name__ == "__main__":
    main()
