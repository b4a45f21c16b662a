"""`embswap finetune` (step 3) and `embswap evaluate` (scores per language)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from embswap.choices import FINETUNE_MODES, ROBUST_OBJECTIVES
from embswap.errors import EmbswapError
from embswap.tasks.data import SUPERVISED_TASKS

from ._common import ThreadsOption, err_console, out_console, print_json

TASK_CHOICES = SUPERVISED_TASKS
MODE_CHOICES = FINETUNE_MODES

DatasetOpt = Annotated[
    Optional[str],
    typer.Option(
        "--dataset", help="A `datasets` name (xnli, paws-x, xquad, ...) instead of files; needs the datasets library."
    ),
]
ConfigOpt = Annotated[
    Optional[str],
    typer.Option(
        "--config", help="Dataset config (for xnli / paws-x / xquad: the language, e.g. de); may hold {lang}."
    ),
]
TextColOpt = Annotated[
    Optional[str],
    typer.Option("--text-column", help="Dataset column with the text (default: the dataset's own, else 'text')."),
]
PairColOpt = Annotated[
    Optional[str], typer.Option("--pair-column", help="Dataset column with the second text of a pair.")
]
LabelColOpt = Annotated[
    Optional[str], typer.Option("--label-column", help="Dataset column with the label (default 'label').")
]
DeviceOpt = Annotated[
    Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1, mps; default: a GPU when there is one.")
]


def _check_choice(value: str, choices: tuple[str, ...], flag: str) -> None:
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of: {', '.join(choices)}", param_hint=flag)


def _dataset_options(dataset, config, split, text_column, pair_column, label_column) -> dict:
    if not dataset:
        return {}
    return {
        "dataset": dataset,
        "config": config,
        "split": split,
        "text_column": text_column,
        "pair_column": pair_column,
        "label_column": label_column,
    }


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
    epochs: Annotated[float, typer.Option("--epochs", help="Passes over the training rows.")] = 2.0,
    lr: Annotated[
        Optional[float],
        typer.Option(
            "--lr",
            help="Peak learning rate (AdamW, 10% warm-up, linear decay; default from the body: 1e-3 for a small body "
            "made by `embswap pretrain`, 2e-5 for others; the task records it).",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows per step.")] = 32,
    seq_len: Annotated[
        Optional[int],
        typer.Option(
            "--seq-len",
            help="Longest input in tokens (longer inputs are cut; QA contexts are windowed; default: 128, or the "
            "body's positions when it reads fewer).",
        ),
    ] = None,
    max_steps: Annotated[
        Optional[int], typer.Option("--max-steps", help="Stop after this many steps (overrides --epochs).")
    ] = None,
    max_minutes: Annotated[
        Optional[float], typer.Option("--max-minutes", help="Stop after this many minutes; the model so far is saved.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the head init, shuffles, dropout and noise.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint of this output.")] = False,
    device: DeviceOpt = None,
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
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")] = 500,
    dataset: DatasetOpt = None,
    config: ConfigOpt = None,
    split: Annotated[str, typer.Option("--split", help="Dataset split to train on.")] = "train",
    dev_split: Annotated[
        Optional[str], typer.Option("--dev-split", help="Dataset split for the dev set (e.g. validation).")
    ] = None,
    text_column: TextColOpt = None,
    pair_column: PairColOpt = None,
    label_column: LabelColOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
    threads: ThreadsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
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

    from .train import set_threads

    _check_choice(task, TASK_CHOICES, "--task")
    _check_choice(mode, MODE_CHOICES, "--mode")
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
    options = _dataset_options(dataset, config, split, text_column, pair_column, label_column)
    train_rows = _rows(train, task, options, "--train")
    dev_rows = None
    if dev is not None or (dataset and dev_split):
        dev_options = {**options, "split": dev_split} if dataset and dev_split else {}
        dev_rows = _rows(dev, task, dev_options, "--dev")
    label_list = [x.strip() for x in labels.split(",") if x.strip()] if labels else None
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


def _metric_columns(results: dict[str, dict]) -> list[str]:
    first = next(iter(results.values()))
    return [k for k in ("accuracy", "macro_f1", "exact", "f1") if k in first] + ["n"]


RETRIEVAL_COLUMNS = {
    "top1_l2_to_l1": "top-1 L2→L1",
    "top1_l1_to_l2": "top-1 L1→L2",
    "mrr_l2_to_l1": "MRR L2→L1",
    "mrr_l1_to_l2": "MRR L1→L2",
    "n": "n",
}
RETRIEVAL_SYSTEMS = {
    "pack": "pack",
    "untrained_pack": "untrained",
    "raw_text": "raw L2 text",
    "ceiling": "L1↔L1 ceiling",
}


def _store_of(store: Optional[Path], body: Optional[str]):
    """The store given, or the one ``--body STORE/body`` lies in (its L1 pack and pooling apply), or None."""
    from embswap import Store

    return Store(store) if store is not None else Store.of_body(body)


def _store_pooling(st):
    """The store's sentence-embedding task (the pooling), or None (mean, normalised)."""
    if st is None:
        return None
    names = [n for n in st.task_names if n == "sentence-embedding"] or [
        n for n in st.task_names if st.task(n).task == "sentence-embedding"
    ]
    return st.task(names[0]) if names else None


def _reference_for(st, target, reference_pack: Optional[str]):
    """--reference-pack, else in a store the pack ``target`` was initialised from, else its only other pack."""
    from embswap import LanguagePack

    if reference_pack:
        return LanguagePack.from_pretrained(reference_pack)
    if st is not None:
        recorded = ((target.provenance or {}).get("init") or {}).get("reference_pack")
        name = st.reference_language(target.language, recorded=recorded)
        if name:
            return st.pack(name)
    raise typer.BadParameter(
        "retrieval reads the source side with the L1 pack: pass --reference-pack STORE/packs/en",
        param_hint="--reference-pack",
    )


def _retrieval_parts(store, body, pack, lang, reference_pack) -> list[tuple]:
    """(body, pack, reference pack, pooling task) for every language to score."""
    from embswap import Body, LanguagePack

    st = _store_of(store, body)
    if pack is not None:
        targets = [LanguagePack.from_pretrained(pack)]
    elif st is not None and lang:
        targets = [st.pack(x.strip()) for x in lang.split(",") if x.strip()]
    else:
        raise typer.BadParameter("give --body and --pack, or --store with --lang", param_hint="--body/--pack")
    if st is None and body is None:
        raise typer.BadParameter("give --body (or --store)", param_hint="--body")
    body_art = st.body if st is not None else Body.from_pretrained(body)
    task = _store_pooling(st)
    return [(body_art, target, _reference_for(st, target, reference_pack), task) for target in targets]


def _evaluate_retrieval(data, store, body, pack, lang, reference_pack, ceiling, as_json) -> None:
    from embswap.data.parallel import read_parallel_source
    from embswap.tasks.sentence import retrieval_report

    if not data:
        raise typer.BadParameter(
            "give --data: parallel pairs (JSONL source/target, TSV, or bible:4-e:test)", param_hint="--data"
        )
    parts = _retrieval_parts(store, body, pack, lang, reference_pack)
    if len(parts) > 1 and "{lang}" not in data:
        raise EmbswapError("--data has no {lang} placeholder, so every language would read the same pairs")
    ceiling_pairs = read_parallel_source(ceiling) if ceiling else None
    # Every language's pairs are read before any scoring, so bad data fails at once.
    pairs = [read_parallel_source(data.format(lang=target.language)) for _, target, _, _ in parts]
    reports = {}
    for (body_art, target, reference, task), rows in zip(parts, pairs):
        err_console.print(f"retrieval {target.language} ↔ {reference.language}: scoring the pack and controls ...")
        reports[target.language] = retrieval_report(
            body_art, target, rows, reference_pack=reference, task=task, ceiling_pairs=ceiling_pairs
        )
    if as_json:
        print_json(next(iter(reports.values())) if len(reports) == 1 else reports)
        return
    for language, report in reports.items():
        reference = report["reference_language"]
        table = Table(
            title=f"retrieval {language} ↔ {reference}, percent; untrained: the pack's init; "
            f"raw L2 text: the {reference} pack reading {language}"
        )
        table.add_column("system")
        for header in RETRIEVAL_COLUMNS.values():
            table.add_column(header, justify="right")
        for key, metrics in report["results"].items():
            name = RETRIEVAL_SYSTEMS[key] + (f" ({report['untrained_init']})" if key == "untrained_pack" else "")
            table.add_row(name, *(str(metrics[c]) if c == "n" else f"{metrics[c]:.1f}" for c in RETRIEVAL_COLUMNS))
        out_console.print(table)
        for note in report["notes"]:
            err_console.print(note)


def evaluate(
    data: Annotated[
        Optional[str],
        typer.Option(
            "--data",
            help="Rows to score: file, named source, or a pattern with {lang} (test.{lang}.jsonl, bible-genre:{lang}:test).",
        ),
    ] = None,
    task: Annotated[
        Optional[str],
        typer.Option(
            "--task",
            help="Task module folder, a task name with --store, or retrieval (sentence-embedding packs; --data "
            "holds parallel pairs).",
        ),
    ] = None,
    body: Annotated[Optional[str], typer.Option("--body", help="Body folder or Hub id.")] = None,
    pack: Annotated[Optional[str], typer.Option("--pack", help="Language pack folder or Hub id.")] = None,
    store: Annotated[Optional[Path], typer.Option("--store", help="A store; then --task NAME and --lang.")] = None,
    lang: Annotated[
        Optional[str], typer.Option("--lang", help="Comma-separated languages of the store to score (default: all).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows per forward pass.")] = 64,
    seq_len: Annotated[
        Optional[int],
        typer.Option(
            "--seq-len", help="Longest input in tokens (default: the task's own, or the body's positions if fewer)."
        ),
    ] = None,
    device: DeviceOpt = None,
    dataset: DatasetOpt = None,
    config: ConfigOpt = None,
    split: Annotated[str, typer.Option("--split", help="Dataset split to score.")] = "test",
    text_column: TextColOpt = None,
    pair_column: PairColOpt = None,
    label_column: LabelColOpt = None,
    reference_pack: Annotated[
        Optional[str],
        typer.Option(
            "--reference-pack",
            help="retrieval: the L1 pack reading the source side (default: in a store, the pack's own reference).",
        ),
    ] = None,
    ceiling: Annotated[
        Optional[str],
        typer.Option(
            "--ceiling", help="retrieval: L1 paraphrase pairs (file or bible:4-2:test) for the L1<->L1 ceiling."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout (per language when several).")
    ] = False,
) -> None:
    """Score a language x task: accuracy and macro-F1, or SQuAD exact match and F1 (percent).

    Examples: embswap evaluate --body store/body --pack store/packs/de --task store/tasks/genre
    --data bible-genre:de:test; embswap evaluate --store store --task genre --lang de,ru --data 'test.{lang}.jsonl'

    Retrieval (sentence-embedding packs): embswap evaluate --store store --lang de --task retrieval
    --data bible:4-e:test [--ceiling bible:4-2:test] reports top-1 both ways and MRR (percent) for the
    pack, the untrained pack with the same init, the original model on the raw L2 text and the ceiling.
    """
    from embswap.evaluate import evaluate as run_evaluate
    from embswap.evaluate import evaluate_languages

    if task is None:
        raise typer.BadParameter("give --task (a task folder, or a task name with --store)", param_hint="--task")
    if task == "retrieval":
        if seq_len is not None:
            raise typer.BadParameter(
                "retrieval reads the pooling's length (cut to the body's); drop it", param_hint="--seq-len"
            )
        _evaluate_retrieval(data, store, body, pack, lang, reference_pack, ceiling, as_json)
        return
    if reference_pack is not None or ceiling is not None:
        raise typer.BadParameter("--reference-pack and --ceiling belong to --task retrieval", param_hint="--task")
    options = _dataset_options(dataset, config, split, text_column, pair_column, label_column)
    if not data and not options:
        raise typer.BadParameter("give --data (file, named source or {lang} pattern) or --dataset", param_hint="--data")
    if store is not None:
        from embswap import Store

        st = Store(store)
        if task not in st.task_names and not Path(task).exists():
            st.task(task)  # not found: the error lists the store's tasks, as `compose --store` does
        languages = [x.strip() for x in lang.split(",") if x.strip()] if lang else st.languages
        if not languages:
            raise EmbswapError(f"store {store} has no language packs; train one with `embswap transfer`")
        results = evaluate_languages(
            st, task, languages, data or "", batch_size=batch_size, device=device, seq_len=seq_len, **options
        )
    else:
        if body is None or pack is None:
            raise typer.BadParameter("give --body and --pack, or --store with --lang", param_hint="--body/--pack")
        if lang and "," in lang:
            raise typer.BadParameter("several languages need --store", param_hint="--lang")
        name = lang or "-"
        results = {
            name: run_evaluate(body, pack, task, data or "", batch_size, device=device, seq_len=seq_len, **options)
        }
    if as_json:
        print_json(next(iter(results.values())) if len(results) == 1 else results)
        return
    columns = _metric_columns(results)
    table = Table(title=f"task {task}")
    table.add_column("language")
    for column in columns:
        table.add_column(column.replace("_", "-"), justify="right")
    for language, metrics in results.items():
        table.add_row(language, *(str(metrics[c]) if c == "n" else f"{metrics[c]:.2f}" for c in columns))
    out_console.print(table)


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune)
    app.command("evaluate")(evaluate)
