"""Result files people read or look at: JSON, Markdown tables and PNG plots of a run."""

from __future__ import annotations

import json
from pathlib import Path

from .demo.bars import MARGIN_BAR, SELF_TRANSFER_BAR
from .io import atomic_folder
from .train.reporting import LOG_NAME, read_log


def demo_markdown(results: dict) -> str:
    lines = [
        (
            "| language | zero-shot acc | macro-F1 | untrained pack | majority | margin over better control | "
            f"bar (≥ {MARGIN_BAR:g}) |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["languages"]:
        lines.append(
            f"| {row['language']} | {row['accuracy']:.1f} | {row['macro_f1']:.1f} | {row['untrained_pack']:.1f} | "
            f"{row['majority']:.1f} | {row['margin_over_controls']:+.1f} | {'met' if row['meets_bar'] else 'NOT met'} |"
        )
    english, st = results["english"], results["self_transfer"]
    lines += [
        "",
        f"English in-language: {english['accuracy']:.1f} % accuracy, {english['macro_f1']:.1f} macro-F1 "
        f"(majority {results['majority']['accuracy']:.1f} %). Clean self-transfer (a re-learned English pack "
        f"swapped in, never seen by fine-tuning): {st['accuracy']:.1f} % = {100 * results['self_transfer_ratio']:.0f} % "
        f"of English (bar: ≥ {100 * SELF_TRANSFER_BAR:.0f} %). Test examples per language: {results['n_test']}."
        f"{_robust_sentence(results)}",
        "",
        self_transfer_line(results),
    ]
    capped = budget_line(results)
    if capped:
        lines += ["", capped]
    return "\n".join(lines) + "\n"


def _robust_sentence(results: dict) -> str:
    k = results.get("config", {}).get("robust_packs") or 0
    if not k:
        return ""
    return (
        f" The classifier was fine-tuned swap-robust: batches read the English pack and {k} re-learned "
        f"English pack{'s' if k > 1 else ''} in turn."
    )


def budget_line(results: dict) -> str:
    """Stages that a minutes cap stopped before their step budget (a busy machine learns less)."""
    config, stages = results.get("config", {}), results.get("stages", {})
    planned = {"pretrain": config.get("pretrain_steps"), "finetune": config.get("finetune_steps")}
    short = [
        f"{stage} {info['steps']}/{planned.get(stage, config.get('transfer_steps'))} steps"
        for stage, info in stages.items()
        if info.get("stopped_by") == "max_minutes"
    ]
    if not short:
        return ""
    environment = results.get("environment", {})
    return (
        f"Stopped by a minutes cap before the step budget: {', '.join(short)} "
        f"({environment.get('torch_threads', '?')} torch threads, load average at the end "
        f"{environment.get('load_average_end', ['?'])[0]})."
    )


def self_transfer_line(results: dict) -> str:
    """The swap diagnostic in one sentence: self-transfer ratio and how well the vectors were re-learned."""
    line = f"self-transfer: {100 * results['self_transfer_ratio']:.0f} % of English"
    alignment = results.get("self_transfer_alignment")
    if alignment:  # results written before the diagnostic existed have none
        line += (
            f"; re-learned English vectors: mean cosine {alignment['mean_cosine']:.2f}, "
            f"{alignment['finds_itself_percent']:.0f} % find themselves"
        )
    return line


def _bar_chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["languages"]
    labels = ["en (in-language)", "en (self-transfer)"] + [r["language"] for r in rows]
    zero = [results["english"]["accuracy"], results["self_transfer"]["accuracy"]] + [r["accuracy"] for r in rows]
    control = [None, None] + [r["untrained_pack"] for r in rows]
    fig, ax = plt.subplots(figsize=(1.3 * len(labels) + 2, 4))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], zero, width=0.4, label="embswap pack", color="#2b6cb0")
    ax.bar(
        [x + 0.2 for x in xs if control[x] is not None],
        [c for c in control if c is not None],
        width=0.4,
        label="untrained pack (control)",
        color="#a0aec0",
    )
    ax.axhline(results["majority"]["accuracy"], color="#c53030", linestyle="--", label="majority class")
    ax.set_xticks(list(xs), labels, rotation=20)
    ax.set_ylabel("genre accuracy on held-out books (%)")
    ax.set_title("English-only classifier, other languages through swapped embeddings")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def learning_curves(curves: dict[str, list[dict]], path: Path, title: str) -> None:
    """One panel per stage: training loss (and eval loss when logged) against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {name: log for name, log in curves.items() if log}
    if not curves:
        return
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2), squeeze=False)
    for ax, (name, log) in zip(axes[0], curves.items()):
        steps = [r["step"] for r in log if "loss" in r]
        ax.plot(steps, [r["loss"] for r in log if "loss" in r], label="train loss")
        for key in ("eval_mlm_loss", "align_loss", "mlm_loss"):
            points = [(r["step"], r[key]) for r in log if key in r]
            if points and key != "mlm_loss":
                ax.plot(*zip(*points), label=key.replace("_", " "))
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_demo_report(results: dict, output: Path, store) -> Path:
    """results.json, results.md, results.png and learning_curves.png under ``output/report``."""
    folder = Path(output) / "report"
    with atomic_folder(folder) as tmp:
        (tmp / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
        (tmp / "results.md").write_text(demo_markdown(results), encoding="utf-8")
        _bar_chart(results, tmp / "results.png")
        curves = {"pretrain en": read_log(store.body_path / LOG_NAME)}
        curves.update(
            {f"transfer {lang}": read_log(store.pack_path(lang) / LOG_NAME) for lang in store.languages if lang != "en"}
        )
        learning_curves(curves, tmp / "learning_curves.png", "embswap demo: learning curves")
    return folder
