"""`embswap finetune`: step 3, body + head on L1 task data with the word embeddings frozen (optionally
swap-robust: batches read through re-learned L1 packs in turn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from embswap.choices import FINETUNE_MODES, ROBUST_OBJECTIVES
from embswap.tasks.data import SUPERVISED_TASKS

from ._common import comma_list, err_console, out_console, print_json
from ._options import (
    MIN_SEQ_LEN,
    CheckpointEveryOption,
    JsonSummaryOption,
    LabelColumnOption,
    PairColumnOption,
    QuietOption,
    ResumeOption,
    TaskDatasetConfigOption,
    TaskDatasetOption,
    TaskDeviceOption,
    TextColumnOption,
    ThreadsOption,
    set_threads,
    task_dataset_options,
)

TASK_CHOICES = SUPERVISED_TASKS
MODE_CHOICES = FINETUNE_MODES


def _check_choice(value: str, choices: tuple[str, ...], flag: str) -> None:
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of: {', '.join(choices)}", param_hint=flag)


def _rows(source: Optional[str], task: str, options: dict, flag: str) -> list[dict]:
    from embswap.tasks.data import load_rows

    if not options and not source:
        raise typer.BadParameter(
            "give a file, a named source (e.g. bible-genre:en:train) or --dataset", param_hint=flag
        )
    return load_rows(source or "", task, **dict(options))


def _robust_packs(body, pack, store, k, texts, max_steps, max_minutes, seed, device, objective="mlm", parallel=None):
    """(the L1 pack, {name: re-learned pack}) for --robust-packs K, from the store or re-learned into it."""
    from embswap import Body, LanguagePack
    from embswap.data.parallel import read_parallel_sources
    from embswap.data.text import describe, read_texts
    from embswap.errors import DataError
    from embswap.train.robust import relearn_l1_packs, robust_pack_name, robust_store

    if k < 0:
        raise DataError(f"--robust-packs is {k}; give the number of extra L1 packs to re-learn (0 or more)")
    kept_in = robust_store(body, store)
    if kept_in is None:
        raise typer.BadParameter(
            "the re-learned packs are kept in a store: pass --store STORE (or --body STORE/body)",
            param_hint="--store",
        )
    _check_choice(objective, ROBUST_OBJECTIVES, "--robust-objective")
    pairs = read_parallel_sources(parallel) if parallel else None
    l1 = LanguagePack.from_pretrained(pack)
    relearned = relearn_l1_packs(
        kept_in,
        l1,
        read_texts(texts or []),
        k,
        body=Body.from_pretrained(body),
        seed=seed,
        max_steps=max_steps,
        max_minutes=max_minutes,
        device=device,
        data_description={"mlm": describe(texts or []), "parallel": list(parallel or [])}
        if parallel
        else describe(texts or []),
        log=err_console.print,
        objective=objective,
        parallel=pairs,
    )
    return l1, {robust_pack_name(l1.language, i): p for i, p in enumerate(relearned, start=1)}


def finetune(
    body: Annotated[str, typer.Option("--body", help="Body folder (STORE/body) or Hub id.")],
    pack: Annotated[str, typer.Option("--pack", help="The L1 language pack (STORE/packs/en).")],
    task: Annotated[str, typer.Option("--task", help="classification, pair-classification or qa.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Task module folder to write (STORE/tasks/NAME).")],
    train: Annotated[
        Optional[str],
        typer.Option(
            "--train", help="Training rows: JSONL, SQuAD JSON (qa), or a named source such as bible-genre:en:train."
        ),
    ] = None,
    dev: Annotated[
        Optional[str], typer.Option("--dev", help="Dev rows, scored after every epoch (same formats as --train).")
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="full (the paper: body + head), adapter (task adapter, body untouched) or frozen (head only).",
        ),
    ] = "full",
    noise: Annotated[
        float,
        typer.Option(
            "--noise",
            help="Std of Gaussian noise on word/position/segment embeddings in training (the paper's +noise: 0.075).",
        ),
    ] = 0.0,
    epochs: Annotated[float, typer.Option("--epochs", min=0, help="Passes over the training rows.")] = 2.0,
    lr: Annotated[
        Optional[float],
        typer.Option(
            "--lr",
            help="Peak learning rate (AdamW, 10% warm-up, linear decay; default from the body: 1e-3 for a small body "
            "made by `embswap pretrain`, 2e-5 for others; the task records it).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows per step.")] = 32,
    seq_len: Annotated[
        Optional[int],
        typer.Option(
            "--seq-len",
            min=MIN_SEQ_LEN,
            help="Longest input in tokens (longer inputs are cut; QA contexts are windowed; default: 128, or the "
            "body's positions when it reads fewer).",
        ),
    ] = None,
    max_steps: Annotated[
        Optional[int], typer.Option("--max-steps", min=0, help="Stop after this many steps (overrides --epochs).")
    ] = None,
    max_minutes: Annotated[
        Optional[float], typer.Option("--max-minutes", help="Stop after this many minutes; the model so far is saved.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the head init, shuffles, dropout and noise.")] = 0,
    resume: ResumeOption = False,
    device: TaskDeviceOption = None,
    robust_packs: Annotated[
        int,
        typer.Option(
            "--robust-packs",
            help="Swap-robust fine-tuning: re-learn K extra L1 packs (step 2 on --robust-text, kept in the store as "
            "LANG-robust-1..K and reused by later runs) and read the batches through --pack and these in turn.",
        ),
    ] = 0,
    robust_text: Annotated[
        Optional[list[str]],
        typer.Option(
            "--robust-text",
            help="L1 text the robust packs are re-learned from: a file or a named source such as bible:en. Repeatable.",
        ),
    ] = None,
    robust_objective: Annotated[
        str,
        typer.Option(
            "--robust-objective",
            help="Step-2 objective of the robust packs: mlm, or mlm+align / align with --robust-parallel (measured "
            "better at laptop scale: benchmarks/results/robust_finetune.md).",
        ),
    ] = "mlm",
    robust_parallel: Annotated[
        Optional[list[str]],
        typer.Option(
            "--robust-parallel",
            help="L1 sentence pairs for an align objective (two wordings of one text): JSONL source/target, TSV, or a "
            "named source such as bible:4-3. Repeatable.",
        ),
    ] = None,
    robust_steps: Annotated[int, typer.Option("--robust-steps", help="Step-2 steps per re-learned pack.")] = 1000,
    robust_minutes: Annotated[
        float, typer.Option("--robust-minutes", help="Stop re-learning a pack after this many minutes.")
    ] = 10.0,
    store: Annotated[
        Optional[Path],
        typer.Option("--store", help="Store that keeps the robust packs (default: the store --body sits in)."),
    ] = None,
    extra_pack: Annotated[
        Optional[list[str]],
        typer.Option(
            "--extra-pack", help="An L1 pack folder you already have, alternated like the robust packs. Repeatable."
        ),
    ] = None,
    labels: Annotated[
        Optional[str],
        typer.Option(
            "--labels", help="Comma-separated label names in class order (default: sorted labels of --train)."
        ),
    ] = None,
    checkpoint_every: CheckpointEveryOption = 500,
    dataset: TaskDatasetOption = None,
    config: TaskDatasetConfigOption = None,
    split: Annotated[str, typer.Option("--split", help="Dataset split to train on.")] = "train",
    dev_split: Annotated[
        Optional[str], typer.Option("--dev-split", help="Dataset split for the dev set (e.g. validation).")
    ] = None,
    text_column: TextColumnOption = None,
    pair_column: PairColumnOption = None,
    label_column: LabelColumnOption = None,
    as_json: JsonSummaryOption = False,
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Step 3: fine-tune body + head on L1 task data with the word embeddings frozen.

    Example: embswap finetune --body store/body --pack store/packs/en --task classification
    --train bible-genre:en:train --dev bible-genre:en:dev -o store/tasks/genre --noise 0.075
    [--robust-packs 2 --robust-text bible:en --robust-objective mlm+align --robust-parallel bible:4-3]
    """
    from embswap import Body
    from embswap.architectures import resolve_seq_len
    from embswap.outputs import check_output
    from embswap.tasks.data import describe_source
    from embswap.train.finetune import default_lr
    from embswap.train.finetune import finetune as run_finetune
    from embswap.train.finetune_config import FinetuneConfig

    _check_choice(task, TASK_CHOICES, "--task")
    _check_choice(mode, MODE_CHOICES, "--mode")
    # The run's own checks (noise, epochs, lr, counts), made before any data is read or progress printed.
    FinetuneConfig(
        task, mode=mode, noise=noise, epochs=epochs, lr=lr, batch_size=batch_size, seq_len=seq_len, max_steps=max_steps
    )
    set_threads(threads)
    # An earlier task module there is replaced (re-training a store's task in place).
    check_output(
        output,
        "task_module",
        inputs=[body, pack, train, dev, *(extra_pack or []), *(robust_text or []), *(robust_parallel or [])],
    )
    body_art = Body.from_pretrained(body)
    # Resolved here too, so a length the body cannot read fails before any data or robust pack is read.
    length, length_source = resolve_seq_len(body_art.model_config, seq_len)
    rate, rate_source = (lr, "given") if lr is not None else default_lr(body_art)
    options = task_dataset_options(dataset, config, split, text_column, pair_column, label_column)
    train_rows = _rows(train, task, options, "--train")
    dev_rows = None
    if dev is not None or (dataset and dev_split):
        dev_options = {**options, "split": dev_split} if dataset and dev_split else {}
        dev_rows = _rows(dev, task, dev_options, "--dev")
    label_list = comma_list(labels) if labels else None
    extra_packs, pack_names = list(extra_pack or []), None
    if robust_packs != 0:
        l1, relearned = _robust_packs(
            body,
            pack,
            store,
            robust_packs,
            robust_text,
            robust_steps,
            robust_minutes,
            seed,
            device,
            robust_objective,
            robust_parallel,
        )
        pack_names = [Path(pack).name, *(Path(p).name for p in extra_packs), *relearned]
        pack, extra_packs = l1, extra_packs + list(relearned.values())
    err_console.print(
        f"fine-tuning {task} ({mode}) on {len(train_rows)} rows"
        + (f", dev {len(dev_rows)}" if dev_rows else "")
        + f"; lr {rate:g} ({rate_source}), seq_len {length} ({length_source})"
    )
    module = run_finetune(
        body_art,
        pack,
        task,
        train_rows,
        dev_rows=dev_rows,
        labels=label_list,
        output=output,
        mode=mode,
        noise=noise,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seq_len=seq_len,
        seed=seed,
        resume=resume,
        device=device,
        max_steps=max_steps,
        max_minutes=max_minutes,
        extra_packs=extra_packs or None,
        pack_names=pack_names,
        checkpoint_every=checkpoint_every,
        data_description=describe_source(train or "", **options),
        progress=not quiet,
    )
    summary = {
        "output": str(output),
        "task": module.task,
        "mode": module.mode,
        "labels": module.labels,
        "steps": module.provenance.get("steps"),
        "lr": module.provenance.get("lr"),
        "lr_source": module.provenance.get("lr_source"),
        "seq_len": module.provenance.get("seq_len"),
        "dev_metrics": module.provenance.get("dev_metrics", {}),
    }
    if "batches_per_pack" in module.provenance:
        summary["packs"] = [entry["name"] for entry in module.provenance["trained_with_packs"]]
        summary["batches_per_pack"] = module.provenance["batches_per_pack"]
    if as_json:
        print_json(summary)
        return
    dev_text = ", ".join(f"{k} {v:.1f}" for k, v in summary["dev_metrics"].items())
    err_console.print(
        f"task module written to {output} ({summary['steps']} steps{'; dev ' + dev_text if dev_text else ''})"
    )
    out_console.print(str(output))


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
