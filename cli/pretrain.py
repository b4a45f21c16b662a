"""`embswap pretrain`: step 1, a masked LM from scratch on one language or (baselines) several."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import comma_list, err_console, print_result
from ._options import (
    BatchSizeOption,
    CheckpointEveryOption,
    DatasetColumnOption,
    DatasetConfigOption,
    DatasetSplitOption,
    DeviceOption,
    MaxMinutesOption,
    MaxStepsOption,
    QuietOption,
    SeqLenOption,
    ThreadsOption,
    check_family,
    check_vocab_size,
    loop_settings,
    require_text,
    set_threads,
)

TEXT_HELP = (
    "Training text: a UTF-8 file (one sentence or document a line), .jsonl with a 'text' field, or a named "
    "source like bible:en. Repeatable; with several languages each value is LANG=FILE (e.g. de=de.txt, de=bible:de)."
)


def _by_language(values: list[str], languages: list[str], option: str) -> dict[str, list[str]]:
    """Group LANG=VALUE options; with one language a bare VALUE belongs to it."""
    grouped: dict[str, list[str]] = {lang: [] for lang in languages}
    for value in values:
        lang, sep, rest = value.partition("=")
        if sep and lang in grouped:
            grouped[lang].append(rest)
        elif len(languages) == 1:
            grouped[languages[0]].append(value)
        else:
            raise typer.BadParameter(
                f"{value!r}: with several languages each value is LANG=VALUE, LANG one of {', '.join(languages)}",
                param_hint=option,
            )
    return grouped


def pretrain(
    ctx: typer.Context,
    lang: Annotated[str, typer.Option("--lang", help="Language code, or several joined by commas (joint baselines).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Store to write body/ and packs/<lang>/ into.")],
    text: Annotated[Optional[list[str]], typer.Option("--text", help=TEXT_HELP)] = None,
    family: Annotated[str, typer.Option("--family", help="Model family: bert or roberta.")] = "bert",
    preset: Annotated[
        str, typer.Option("--preset", help="Model size: tiny (4x256), small (6x512), base (12x768).")
    ] = "tiny",
    vocab_size: Annotated[
        Optional[int],
        typer.Option("--vocab-size", min=1, help="Tokenizer size to train (per language with --vocab disjoint)."),
    ] = None,
    tokenizer: Annotated[
        Optional[list[str]],
        typer.Option(
            "--tokenizer",
            help="Use this tokenizer folder instead of training one (LANG=DIR per language with --vocab disjoint).",
        ),
    ] = None,
    tokenizer_model: Annotated[
        Optional[str], typer.Option("--tokenizer-model", help="wordpiece, unigram or bpe (default: the family's).")
    ] = None,
    vocab: Annotated[
        str, typer.Option("--vocab", help="Several languages: joint (one shared vocabulary) or disjoint (one each).")
    ] = "joint",
    max_steps: MaxStepsOption = 2000,
    max_minutes: MaxMinutesOption = None,
    seq_len: SeqLenOption = 128,
    batch_size: BatchSizeOption = 32,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, linear warmup and decay).")] = 5e-4,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the init, the batches, the masks, the eval split.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint of this store.")] = False,
    device: DeviceOption = None,
    eval_fraction: Annotated[
        float, typer.Option("--eval-fraction", help="Share of each language's lines held out for the eval MLM loss.")
    ] = 0.02,
    checkpoint_every: CheckpointEveryOption = 500,
    eval_every: Annotated[
        Optional[int],
        typer.Option("--eval-every", help="Steps between held-out evaluations (default: at checkpoints)."),
    ] = None,
    max_positions: Annotated[
        Optional[int], typer.Option("--max-positions", help="Longest input the body reads (default: --seq-len).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the store's body (its other packs and tasks stop composing).")
    ] = False,
    dataset: Annotated[
        Optional[str], typer.Option("--dataset", help="Hugging Face dataset name (online, one language).")
    ] = None,
    dataset_config: DatasetConfigOption = None,
    split: DatasetSplitOption = "train",
    column: DatasetColumnOption = "text",
    threads: ThreadsOption = None,
    quiet: QuietOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the body's provenance as JSON on stdout.")] = False,
) -> None:
    """Step 1: pretrain a masked LM from scratch; writes STORE/body and STORE/packs/<lang>.

    With several languages (--lang en,de) it trains the joint baselines (JointPair, JointMulti).

    Examples: embswap pretrain --lang en --text bible:en -o store --max-minutes 20;
    embswap pretrain --lang en,de --text en=en.txt --text de=de.txt --vocab disjoint -o joint-store
    """
    from embswap.artifacts import load_tokenizer
    from embswap.data.text import describe, read_texts
    from embswap.outputs import STORE, check_output
    from embswap.train.pretrain import PRESETS, VOCAB_MODES, PretrainConfig, run_pretrain
    from embswap.train.tokenizer import TOKENIZER_MODELS

    languages = comma_list(lang)
    if not languages or len(set(languages)) != len(languages):
        raise typer.BadParameter(f"{lang!r}: give distinct language codes joined by commas", param_hint="--lang")
    from embswap.names import check_name

    for code in languages:
        check_name(code, "language code")  # each names a pack's folder in the store
    check_family(family)
    if preset not in PRESETS:
        raise typer.BadParameter(f"expected one of: {', '.join(PRESETS)}", param_hint="--preset")
    if vocab not in VOCAB_MODES:
        raise typer.BadParameter(f"expected one of: {', '.join(VOCAB_MODES)}", param_hint="--vocab")
    if vocab_size is not None and tokenizer:
        raise typer.BadParameter("give --vocab-size or --tokenizer, not both", param_hint="--vocab-size")
    if tokenizer_model is not None and tokenizer_model not in TOKENIZER_MODELS:
        raise typer.BadParameter(f"expected one of: {', '.join(TOKENIZER_MODELS)}", param_hint="--tokenizer-model")
    check_vocab_size(vocab_size, family)  # the tokenizers a run trains have the family's special tokens
    if dataset is not None and len(languages) > 1:
        raise typer.BadParameter(
            "--dataset reads one language; use --text LANG=FILE for several", param_hint="--dataset"
        )
    require_text(text, dataset)
    # Values may be LANG=PATH; both readings are inputs the store must not hold or sit in.
    values = [*(text or []), *(tokenizer or [])]
    check_output(output, STORE, inputs=[*values, *(value.partition("=")[2] for value in values)])
    check_output(
        output / "body", "body", replace=resume or overwrite, flag="--overwrite (or --resume to continue its run)"
    )
    set_threads(threads)

    specs = _by_language(text or [], languages, "--text")
    empty = [code for code, values in specs.items() if not values and not (dataset and code == languages[0])]
    if empty:
        raise typer.BadParameter(f"no --text for {', '.join(empty)}", param_hint="--text")
    dataset_args = dict(dataset_config=dataset_config, split=split, column=column)
    texts, sources = {}, {}
    for code in languages:
        with_dataset = dataset if code == languages[0] else None
        texts[code] = read_texts(specs[code], dataset=with_dataset, **dataset_args)
        sources[code] = describe(
            specs[code], with_dataset, config=dataset_config, split=split if with_dataset else None
        )
        err_console.print(f"{code}: {len(texts[code]):,} lines from {', '.join(sources[code])}")

    tok = None
    if tokenizer and vocab == "disjoint" and len(languages) > 1:
        grouped = _by_language(tokenizer, languages, "--tokenizer")
        wrong = [code for code, folders in grouped.items() if len(folders) != 1]
        if wrong:
            raise typer.BadParameter(
                f"give one --tokenizer LANG=DIR for each of {', '.join(wrong)}", param_hint="--tokenizer"
            )
        tok = {code: load_tokenizer(Path(folders[0])) for code, folders in grouped.items()}
    elif tokenizer:
        if len(tokenizer) > 1:
            raise typer.BadParameter("every language shares one tokenizer here; give it once", param_hint="--tokenizer")
        code, sep, folder = tokenizer[0].partition("=")
        tok = load_tokenizer(Path(folder if sep and code in languages else tokenizer[0]))

    outcome = run_pretrain(
        texts,
        output,
        PretrainConfig(
            family=family,
            preset=preset,
            vocab_size=vocab_size if vocab_size is not None else 8000,
            tokenizer_model=tokenizer_model,
            vocab=vocab,
            eval_fraction=eval_fraction,
            eval_every=eval_every,
            max_positions=max_positions,
            **loop_settings(ctx.params),
        ),
        tokenizer=tok,
        resume=resume,
        overwrite=overwrite,
        data_description=sources,
    )
    prov = outcome.body.provenance
    losses = prov["mlm_loss"]
    err_console.print(
        f"{prov['baseline']} {family}-{prov['preset']} body {outcome.body.short_fingerprint} (reads up to "
        f"{prov['max_positions']} tokens) and packs "
        f"{', '.join(languages)} written to {output}: {prov['steps']} steps, {prov['tokens_seen']:,} tokens, "
        f"{prov['minutes']} min, held-out MLM loss {_rounded(losses['eval_initial'])} -> "
        f"{_rounded(losses['eval_final'])}"
    )
    print_result(output, {"output": str(output), "fingerprint": outcome.body.fingerprint, **prov}, as_json)


def _rounded(value: float | None):
    return None if value is None else round(value, 4)


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
