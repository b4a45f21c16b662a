"""`embswap tokenizer train`: a new language's tokenizer with the shared special tokens in place."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import err_console, print_result
from ._options import (
    DatasetColumnOption,
    DatasetConfigOption,
    DatasetSplitOption,
    JsonSummaryOption,
    TextDatasetOption,
    check_family,
    check_vocab_size,
    require_text,
)

tokenizer_app = typer.Typer(help="Train tokenizers for new languages.", no_args_is_help=True)


def text_options_help() -> str:
    return "UTF-8 text file (one sentence or document a line), .jsonl with a 'text' field, or a named source like bible:de."


@tokenizer_app.command("train")
def train(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder to save the tokenizer in (save_pretrained).")],
    text: Annotated[Optional[list[str]], typer.Option("--text", help=text_options_help() + " Repeatable.")] = None,
    lang: Annotated[Optional[str], typer.Option("--lang", help="Language code (for messages and records).")] = None,
    vocab_size: Annotated[
        int, typer.Option("--vocab-size", min=1, help="Vocabulary size, special tokens included.")
    ] = 32000,
    model: Annotated[
        Optional[str], typer.Option("--model", help="Subword model: wordpiece, unigram or bpe (default: the family's).")
    ] = None,
    family: Annotated[
        Optional[str], typer.Option("--family", help="Model family whose special tokens to use (default bert).")
    ] = None,
    body: Annotated[
        Optional[str],
        typer.Option("--body", help="A body (STORE/body): use its family and special-token ids, so packs line up."),
    ] = None,
    lowercase: Annotated[bool, typer.Option("--lowercase", help="Lowercase the text before splitting it.")] = False,
    min_frequency: Annotated[int, typer.Option("--min-frequency", help="Drop merges/pieces seen fewer times.")] = 2,
    dataset: TextDatasetOption = None,
    dataset_config: DatasetConfigOption = None,
    split: DatasetSplitOption = "train",
    column: DatasetColumnOption = "text",
    as_json: JsonSummaryOption = False,
) -> None:
    """Train a tokenizer on text, with the special tokens where the body expects them.

    Examples: embswap tokenizer train --lang de --text de.txt --vocab-size 8000 --body store/body -o tok-de;
    embswap tokenizer train --lang de --text bible:de --model unigram -o tok-de
    """
    from embswap.data.text import read_texts
    from embswap.io import atomic_folder
    from embswap.outputs import TOKENIZER, check_output
    from embswap.train.tokenizer import TOKENIZER_MODELS, train_tokenizer

    require_text(text, dataset)
    if lang is not None:
        from embswap.names import check_name

        check_name(lang, "language code")  # the same codes a pack may have
    check_output(output, TOKENIZER, inputs=[*(text or []), body])  # an earlier tokenizer there is replaced
    if model is not None and model not in TOKENIZER_MODELS:
        raise typer.BadParameter(f"expected one of: {', '.join(TOKENIZER_MODELS)}", param_hint="--model")
    check_family(family)
    special_ids, max_length = None, 512
    if body is not None:
        from embswap import Body
        from embswap.architectures import max_input_tokens

        body_art = Body.from_pretrained(body)
        if family is not None and family != body_art.family:
            raise typer.BadParameter(f"the body is a {body_art.family} model; drop --family", param_hint="--family")
        family, special_ids = body_art.family, body_art.special_tokens
        # The tokenizer's own limit (what truncation=True cuts to) is what the body reads.
        max_length = max_input_tokens(body_art.model_config) or max_length
    family = family or "bert"
    check_vocab_size(vocab_size, family, special_ids)
    texts = read_texts(text or [], dataset=dataset, dataset_config=dataset_config, split=split, column=column)
    err_console.print(f"training a {model or 'default'} tokenizer ({family}) on {len(texts):,} lines ...")
    tokenizer = train_tokenizer(
        texts,
        vocab_size,
        family=family,
        model=model,
        special_ids=special_ids,
        lowercase=lowercase,
        min_frequency=min_frequency,
        max_length=max_length,
    )
    with atomic_folder(output) as tmp:
        tokenizer.save_pretrained(str(tmp))
    summary = {
        "output": str(output),
        "language": lang,
        "family": family,
        "model": model or type(tokenizer.backend_tokenizer.model).__name__.lower(),
        "vocab_size": len(tokenizer),
        "lines": len(texts),
        "special_tokens": {
            role: getattr(tokenizer, f"{role}_token_id") for role in ("pad", "unk", "cls", "sep", "mask")
        },
    }
    err_console.print(f"tokenizer with {len(tokenizer):,} tokens written to {output}")
    print_result(output, summary, as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(tokenizer_app, name="tokenizer")
