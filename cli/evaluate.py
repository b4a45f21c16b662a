"""`embswap evaluate`: scores per language of a task module, or retrieval for sentence-embedding packs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from embswap.errors import EmbswapError

from ._common import comma_list, err_console, out_console, print_json
from ._options import (
    BodyOption,
    LabelColumnOption,
    PackOption,
    PairColumnOption,
    TaskDatasetConfigOption,
    TaskDatasetOption,
    TaskDeviceOption,
    TextColumnOption,
    task_dataset_options,
)


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
        targets = [st.pack(code) for code in comma_list(lang)]
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
    body: BodyOption = None,
    pack: PackOption = None,
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
    device: TaskDeviceOption = None,
    dataset: TaskDatasetOption = None,
    config: TaskDatasetConfigOption = None,
    split: Annotated[str, typer.Option("--split", help="Dataset split to score.")] = "test",
    text_column: TextColumnOption = None,
    pair_column: PairColumnOption = None,
    label_column: LabelColumnOption = None,
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
    options = task_dataset_options(dataset, config, split, text_column, pair_column, label_column)
    if not data and not options:
        raise typer.BadParameter("give --data (file, named source or {lang} pattern) or --dataset", param_hint="--data")
    if store is not None:
        from embswap import Store

        st = Store(store)
        if task not in st.task_names and not Path(task).exists():
            st.task(task)  # not found: the error lists the store's tasks, as `compose --store` does
        languages = comma_list(lang) if lang else st.languages
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
    app.command("evaluate")(evaluate)
