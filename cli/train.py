"""Training commands: `embswap transfer` (step 2). Each command is one self-contained function.

Options it shares with other commands are declared in cli/_options.py; the rules it applies (which
reference pack, which parallel text) are the library's (embswap/store.py, embswap/data/parallel.py); a new
command adds its function and one line in :func:`register`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import err_console, print_result
from ._options import (
    BatchSizeOption,
    BodySeqLenOption,
    CheckpointEveryOption,
    DatasetColumnOption,
    DatasetConfigOption,
    DatasetSplitOption,
    DeviceOption,
    MaxMinutesOption,
    MaxStepsOption,
    QuietOption,
    ResumeOption,
    SeedOption,
    TextDatasetOption,
    ThreadsOption,
    check_vocab_size,
    loop_settings,
    require_text,
    set_threads,
)

TEXT_HELP = (
    "Training text: UTF-8 file (one sentence or document a line), .jsonl with a 'text' field, or a named "
    "source like bible:de. Repeatable."
)


def is_main_process() -> bool:
    """False in the extra processes of `accelerate launch` / torchrun: they train but stay quiet."""
    import os

    return os.environ.get("RANK", "0") == "0"


def say(message: str) -> None:
    if is_main_process():
        err_console.print(message)


def transfer(
    ctx: typer.Context,
    body: Annotated[str, typer.Option("--body", help="The frozen body: STORE/body (or a Hub id).")],
    lang: Annotated[str, typer.Option("--lang", help="Language code of the new pack.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Pack folder to write, e.g. STORE/packs/de.")],
    text: Annotated[Optional[list[str]], typer.Option("--text", help=TEXT_HELP)] = None,
    tokenizer: Annotated[
        Optional[Path], typer.Option("--tokenizer", help="A tokenizer folder (from `embswap tokenizer train --body`).")
    ] = None,
    vocab_size: Annotated[
        int, typer.Option("--vocab-size", min=1, help="Vocabulary size when no --tokenizer is given.")
    ] = 8000,
    tokenizer_model: Annotated[
        Optional[str], typer.Option("--tokenizer-model", help="wordpiece, unigram or bpe (default: the body's family).")
    ] = None,
    lowercase: Annotated[bool, typer.Option("--lowercase", help="Lowercase when training the tokenizer.")] = False,
    init: Annotated[
        Optional[str],
        typer.Option(
            "--init",
            help="Initial matrix: random, overlap, dictionary, subword-mean, or aligned (word alignment of the "
            '--parallel text with eflomal: pip install "embswap[align]"). Default: aligned with --parallel '
            "(subword-mean where eflomal is missing), else random.",
        ),
    ] = None,
    reference_pack: Annotated[
        Optional[str],
        typer.Option("--reference-pack", help="Pack to copy rows from (default: the store's only other pack)."),
    ] = None,
    dictionary: Annotated[
        Optional[Path],
        typer.Option("--dictionary", help="Word list for --init dictionary: word<TAB>translation lines."),
    ] = None,
    dictionary_limit: Annotated[
        Optional[int], typer.Option("--dictionary-limit", help="Look up only the N most frequent words.")
    ] = None,
    pos: Annotated[bool, typer.Option("--pos", help="Also learn language-specific position embeddings.")] = False,
    adapters: Annotated[bool, typer.Option("--adapters", help="Also learn a Houlsby language adapter.")] = False,
    anchors: Annotated[
        str,
        typer.Option(
            "--anchors",
            help="Rows set from the reference: auto (frozen for --init dictionary, else free; the ablation's "
            "pick), free (train on), frozen (stay fixed) or penalty (train, pulled back to their start by an L2 "
            "penalty).",
        ),
    ] = "auto",
    anchor_penalty: Annotated[
        Optional[float],
        typer.Option(
            "--anchor-penalty",
            help="Weight of --anchors penalty on the anchored rows' relative squared drift (default: about the MLM "
            "loss at the start; the pack records it).",
        ),
    ] = None,
    objective: Annotated[
        str, typer.Option("--objective", help="What the pack learns from: mlm (the paper), align, or mlm+align.")
    ] = "mlm",
    parallel: Annotated[
        Optional[list[str]],
        typer.Option(
            "--parallel", help="Parallel text for align: JSONL {source,target}, TSV, or bible:4-e. Repeatable."
        ),
    ] = None,
    align_weight: Annotated[
        Optional[float], typer.Option("--align-weight", help="Weight of the alignment loss (default 5000).")
    ] = None,
    pooling: Annotated[
        str, typer.Option("--pooling", help="Pooled states the alignment compares: mean, cls, max.")
    ] = "mean",
    max_steps: MaxStepsOption = 1000,
    max_minutes: MaxMinutesOption = None,
    seq_len: BodySeqLenOption = None,
    batch_size: BatchSizeOption = 32,
    lr: Annotated[
        Optional[float],
        typer.Option(
            "--lr",
            help="Peak learning rate (AdamW, linear warmup and decay). Default: 1e-3; with --parallel "
            "1e-3 after an aligned init, 5e-3 after the others.",
        ),
    ] = None,
    seed: SeedOption = 0,
    resume: ResumeOption = False,
    device: DeviceOption = None,
    eval_text: Annotated[
        Optional[list[str]], typer.Option("--eval-text", help="Held-out text for the eval MLM loss. Repeatable.")
    ] = None,
    checkpoint_every: CheckpointEveryOption = 500,
    dataset: TextDatasetOption = None,
    dataset_config: DatasetConfigOption = None,
    split: DatasetSplitOption = "train",
    column: DatasetColumnOption = "text",
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the pack's provenance as JSON on stdout.")] = False,
) -> None:
    """Step 2: learn a new language's embeddings (+ output bias) on a frozen body.

    Examples: embswap transfer --body store/body --lang de --text bible:de -o store/packs/de --init overlap;
    embswap transfer --body store/body --lang de --text de.txt -o store/packs/de --max-minutes 10 --resume
    """
    from embswap import Body, LanguagePack
    from embswap.architectures import max_input_tokens
    from embswap.artifacts import load_tokenizer
    from embswap.choices import ANCHOR_MODES, INIT_METHODS, POOLING_MODES
    from embswap.data.parallel import read_parallel_sources
    from embswap.data.text import describe, read_texts
    from embswap.outputs import check_output
    from embswap.store import Store
    from embswap.train.tokenizer import TOKENIZER_MODELS, train_tokenizer
    from embswap.train.transfer import TransferConfig, objective_names, run_transfer, tokenizer_for_run

    if init is not None and init not in INIT_METHODS:
        raise typer.BadParameter(f"expected one of: {', '.join(INIT_METHODS)}", param_hint="--init")
    if anchors not in ANCHOR_MODES:
        raise typer.BadParameter(f"expected one of: {', '.join(ANCHOR_MODES)}", param_hint="--anchors")
    if anchor_penalty is not None and anchors != "penalty":
        raise typer.BadParameter("--anchor-penalty weights --anchors penalty; add it", param_hint="--anchor-penalty")
    parts = [part.strip() for part in objective.split("+")]
    if not all(part in objective_names() for part in parts):
        raise typer.BadParameter(
            f"{objective!r} is not one of: {', '.join(objective_names())}, or several joined by '+' (mlm+align)",
            param_hint="--objective",
        )
    if pooling not in POOLING_MODES:
        raise typer.BadParameter(f"expected one of: {', '.join(POOLING_MODES)}", param_hint="--pooling")
    if tokenizer_model is not None and tokenizer_model not in TOKENIZER_MODELS:
        raise typer.BadParameter(f"expected one of: {', '.join(TOKENIZER_MODELS)}", param_hint="--tokenizer-model")
    if "mlm" in objective.split("+"):
        require_text(text, dataset)
    if "align" in objective.split("+") and not parallel:
        raise typer.BadParameter("the align objective needs --parallel FILE (or bible:4-e)", param_hint="--parallel")
    if init == "dictionary" and dictionary is None:
        raise typer.BadParameter("--init dictionary needs --dictionary FILE", param_hint="--dictionary")
    if init == "aligned" and not parallel:
        raise typer.BadParameter(
            "--init aligned word-aligns --parallel FILE (or bible:4-e); add it", param_hint="--parallel"
        )
    from embswap.names import check_name

    check_name(lang, "language code")  # recorded in the pack, and its folder name in a store
    # An earlier pack there is replaced (re-training a store's pack in place; --resume relies on it).
    inputs = [body, tokenizer, reference_pack, dictionary, *(text or []), *(parallel or []), *(eval_text or [])]
    check_output(output, "language_pack", inputs=inputs)
    set_threads(threads)

    body_art = Body.from_pretrained(body)
    if tokenizer is None:
        check_vocab_size(vocab_size, body_art.family, body_art.special_tokens)  # before any progress line
    reference = reference_pack
    store = Store.of_body(body) if reference is None else None
    name = store.reference_language(lang, exclude={output.name}) if store is not None else None
    if name is not None:
        reference = str(store.pack_path(name))
        say(f"reference pack: {reference} (the store's only other pack)")
    if reference is None and init not in (None, "random"):
        raise typer.BadParameter(
            f"--init {init} copies rows from a reference pack; pass --reference-pack STORE/packs/en",
            param_hint="--reference-pack",
        )
    reference_art = LanguagePack.from_pretrained(reference) if reference is not None else None

    texts = read_texts(text or [], dataset=dataset, dataset_config=dataset_config, split=split, column=column)
    pairs = read_parallel_sources(parallel or [])
    if not texts and pairs:
        texts = [p["target"] for p in pairs]  # the tokenizer (and the MLM term, if any) reads the L2 side
    eval_texts = read_texts(eval_text) if eval_text else None
    if tokenizer is not None:
        tok = load_tokenizer(tokenizer)
    else:

        def train_new():
            say(f"training a {vocab_size:,}-token tokenizer for {lang!r} on {len(texts):,} lines ...")
            return train_tokenizer(
                texts,
                vocab_size,
                family=body_art.family,
                model=tokenizer_model,
                special_ids=body_art.special_tokens,
                lowercase=lowercase,
                max_length=max_input_tokens(body_art.model_config) or 512,
            )

        # Resuming reuses the tokenizer the interrupted run trained (training one is not deterministic).
        tok = tokenizer_for_run(output, train_new, resume=resume, device=device)

    outcome = run_transfer(
        body_art,
        tok,
        texts,
        TransferConfig(
            language=lang,
            init=init,
            dictionary_limit=dictionary_limit,
            pos=pos,
            adapters=adapters,
            anchors=anchors,
            anchor_penalty=anchor_penalty,
            objective=objective,
            objective_options={
                "parallel": pairs,
                "pooling": pooling,
                "parallel_description": ", ".join(parallel or []),
                **({"align_weight": align_weight} if align_weight is not None else {}),
            },
            **loop_settings(ctx.params),
        ),
        output=output,
        reference_pack=reference_art,
        dictionary=dictionary,
        resume=resume,
        eval_texts=eval_texts,
        data_description=describe(text or [], dataset, config=dataset_config, split=split if dataset else None),
        recipe_log=say,
    )
    if not outcome.result.is_main_process:
        return
    prov = outcome.pack.provenance
    losses = prov["mlm_loss"]
    shown = losses["eval_final"] if losses["eval_final"] is not None else losses["train_final"]
    err_console.print(
        f"pack {lang!r} ({outcome.pack.vocab_size:,} tokens) written to {output}: {prov['steps']} steps, "
        f"{prov['tokens_seen']:,} tokens, seq_len {prov['seq_len']} ({prov['seq_len_source']}), "
        f"MLM loss {shown if shown is None else round(shown, 4)}, init {prov['init']['method']} ({prov['init_source']}), "
        f"lr {prov['lr']:g} ({prov['lr_source']}), init counts {prov['init']['counts']}"
    )
    print_result(output, {"output": str(output), **prov}, as_json)


def register(app: typer.Typer) -> None:
    app.command("transfer")(transfer)
