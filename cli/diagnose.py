"""`embswap diagnose`: the swap diagnostic (self-transfer of the L1 pack and its token alignment)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ._common import err_console, out_console, print_json
from ._options import BatchSizeOption, BodySeqLenOption, DeviceOption, JsonResultsOption, SeedOption

OBJECTIVES = ("mlm", "mlm+align")


def _task(store, name: str):
    from embswap import TaskModule

    if name in store.task_names or not Path(name).is_dir():
        return store.task(name)  # an unknown name fails here, listing the store's tasks
    return TaskModule.from_pretrained(name)


def _l1_language(task, lang: Optional[str]) -> str:
    return lang or task.provenance.get("pack_language") or "en"


def _relearned(store, language: str, spec: Optional[str], texts: list[str], description, train_options: dict):
    """(pack, name): a store pack or folder named by ``spec``, else the store's re-learned pack (trained if absent)."""
    from embswap import LanguagePack
    from embswap.diagnose import relearn_pack, relearned_name

    if spec and spec not in store.languages and Path(spec).is_dir():
        return LanguagePack.from_pretrained(spec), spec
    name = spec or relearned_name(language)
    if name in store.languages:
        err_console.print(f"re-learned pack: reusing {name!r} from the store")
        return store.pack(name), name
    err_console.print(f"re-learning the {language!r} pack as {name!r} (body frozen, step 2) on {len(texts):,} lines")
    pack = relearn_pack(store, texts, language=language, name=name, data_description=description, **train_options)
    return pack, name


def _table(report: dict) -> Table:
    metric, alignment = report["metric"], report["alignment"]
    table = Table(title=f"Swap diagnostic: task {report['task']}, {report['language']} vs {report['relearned']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(f"L1 {metric} ({report['language']})", f"{report['l1'][metric]:.1f}")
    table.add_row(f"self-transfer {metric} ({report['relearned']})", f"{report['self_transfer'][metric]:.1f}")
    table.add_row("self-transfer / L1", f"{100 * report['ratio']:.1f} %")
    table.add_row(f"mean cosine ({alignment['matched']} frequent tokens)", f"{alignment['mean_cosine']:.3f}")
    table.add_row("tokens finding themselves", f"{alignment['finds_itself_percent']:.1f} %")
    return table


def diagnose(
    store: Annotated[Path, typer.Option("--store", help="The store: body, the L1 pack and the task.")],
    task: Annotated[str, typer.Option("--task", help="Task name in the store (or a task folder), fine-tuned on L1.")],
    data: Annotated[
        str, typer.Option("--data", help="L1 rows to score: JSONL file or a named source such as bible-genre:en:test.")
    ],
    lang: Annotated[
        Optional[str], typer.Option("--lang", help="The L1 pack (default: the language the task was fine-tuned on).")
    ] = None,
    relearned: Annotated[
        Optional[str],
        typer.Option(
            "--relearned",
            help="Re-learned pack: a store pack name or a folder (default LANG-relearned, trained when absent).",
        ),
    ] = None,
    text: Annotated[
        Optional[list[str]],
        typer.Option("--text", help="L1 text to re-learn from: a file or a named source such as bible:en. Repeatable."),
    ] = None,
    minutes: Annotated[
        Optional[float], typer.Option("--minutes", help="Stop re-learning after this many minutes.")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Re-learning steps (also the schedule's length).")] = 400,
    objective: Annotated[
        str, typer.Option("--objective", help="mlm (the paper) or mlm+align (each sentence onto its original reading).")
    ] = "mlm",
    init: Annotated[
        str,
        typer.Option("--init", help="random, or overlap (copies the original rows: the alignment starts at 1)."),
    ] = "random",
    vocab_size: Annotated[
        Optional[int],
        typer.Option("--vocab-size", min=1, help="Vocabulary of the re-learned pack (default: the L1 pack's)."),
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate of re-learning.")] = 1e-3,
    seq_len: BodySeqLenOption = None,
    batch_size: BatchSizeOption = 32,
    seed: SeedOption = 0,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Frequent tokens (in --data) whose vectors are compared.")
    ] = 1000,
    device: DeviceOption = None,
    as_json: JsonResultsOption = False,
) -> None:
    """Self-transfer: re-learn the L1 pack with the body frozen, swap it into the L1 task model, compare.

    The ratio is the upper bound any L2 can reach; the alignment says how close the re-learned
    vectors of frequent tokens came to the originals.

    Example: embswap diagnose --store store --task genre --data bible-genre:en:test --text bible:en --minutes 2
    """
    from embswap import Store
    from embswap.choices import INIT_METHODS
    from embswap.data.text import describe, read_texts
    from embswap.diagnose import self_transfer
    from embswap.errors import ArtifactNotFoundError
    from embswap.tasks.data import load_rows

    if objective not in OBJECTIVES:
        raise typer.BadParameter(f"{objective!r} is not one of: {', '.join(OBJECTIVES)}", param_hint="--objective")
    if init not in INIT_METHODS:
        raise typer.BadParameter(f"expected one of: {', '.join(INIT_METHODS)}", param_hint="--init")
    if not store.is_dir():
        raise ArtifactNotFoundError(f"no store at {store}; create one with `embswap pretrain` or `embswap split`")
    st = Store(store)
    task_module = _task(st, task)
    language = _l1_language(task_module, lang)
    l1_pack, rows = st.pack(language), load_rows(data, task_module.task)
    train_options = dict(
        objective=objective,
        init=init,
        max_steps=steps,
        max_minutes=minutes,
        seed=seed,
        vocab_size=vocab_size,
        seq_len=seq_len,
        batch_size=batch_size,
        lr=lr,
        device=device,
    )
    texts = read_texts(text) if text else []
    pack, name = _relearned(st, language, relearned, texts, describe(text or []), train_options)
    result = self_transfer(st.body, l1_pack, task_module, rows, pack, top_k=top_k, device=device)
    report = {"task": task, "language": language, "relearned": name, "data": data, **result}
    if as_json:
        print_json(report)
        return
    out_console.print(_table(report))


def register(app: typer.Typer) -> None:
    app.command("diagnose")(diagnose)
