"""Options that several commands share, each declared once: flag, type and help (defaults stay with each command).

An option whose help says something different in each command stays in that command's signature. The helpers
at the end check a group of shared options and turn it into what the library takes; check_device, before the
options, is --device's own check.
"""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer

# The shortest sequence the library trains on (embswap/train/mlm.py, embswap/train/finetune_config.py).
MIN_SEQ_LEN = 8
# The forms --device takes; anything else would fail only inside torch, once the work has started.
_DEVICE = re.compile(r"cpu|mps|cuda(:[0-9]+)?")


def check_device(value: Optional[str]) -> Optional[str]:
    """--device, checked as the command line is read (a usage error naming the forms it takes)."""
    if value is not None and not _DEVICE.fullmatch(value):
        raise typer.BadParameter(
            f"{value!r} is not a device; use cpu, cuda, cuda:N (N: the GPU's number) or mps", param_hint="--device"
        )
    return value


# The training loop of the MLM training commands (pretrain, transfer; diagnose re-learns a pack with some).
# Ranges are checked as the command line is read, so a bad value never starts the work.
MaxStepsOption = Annotated[int, typer.Option("--max-steps", min=0, help="Training steps (also the schedule's length).")]
MaxMinutesOption = Annotated[
    Optional[float], typer.Option("--max-minutes", help="Stop after this many minutes (checkpoint kept).")
]
SeqLenOption = Annotated[int, typer.Option("--seq-len", min=MIN_SEQ_LEN, help="Tokens per training sequence.")]
# Commands that read an existing body: the default is 128 cut to what the body reads.
BodySeqLenOption = Annotated[
    Optional[int],
    typer.Option(
        "--seq-len",
        min=MIN_SEQ_LEN,
        help="Tokens per sequence (default: 128, or the body's positions when it reads fewer).",
    ),
]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", min=1, help="Sequences per step (over all processes).")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the init, the batches and the masks.")]
DeviceOption = Annotated[
    Optional[str], typer.Option("--device", callback=check_device, help="cpu, cuda, mps (default: a GPU if any).")
]
CheckpointEveryOption = Annotated[int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint of this output.")]
ThreadsOption = Annotated[Optional[int], typer.Option("--threads", help="CPU threads for torch.")]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]

# Training text from a Hugging Face dataset instead of --text (pretrain, transfer, tokenizer train).
TextDatasetOption = Annotated[Optional[str], typer.Option("--dataset", help="Hugging Face dataset name (online).")]
DatasetConfigOption = Annotated[Optional[str], typer.Option("--config", help="Dataset configuration.")]
DatasetSplitOption = Annotated[str, typer.Option("--split", help="Dataset split.")]
DatasetColumnOption = Annotated[str, typer.Option("--column", help="Dataset text column.")]

# Task rows from a `datasets` dataset instead of files (finetune, evaluate).
TaskDatasetOption = Annotated[
    Optional[str],
    typer.Option(
        "--dataset", help="A `datasets` name (xnli, paws-x, xquad, ...) instead of files; needs the datasets library."
    ),
]
TaskDatasetConfigOption = Annotated[
    Optional[str],
    typer.Option(
        "--config", help="Dataset config (for xnli / paws-x / xquad: the language, e.g. de); may hold {lang}."
    ),
]
TextColumnOption = Annotated[
    Optional[str],
    typer.Option("--text-column", help="Dataset column with the text (default: the dataset's own, else 'text')."),
]
PairColumnOption = Annotated[
    Optional[str], typer.Option("--pair-column", help="Dataset column with the second text of a pair.")
]
LabelColumnOption = Annotated[
    Optional[str], typer.Option("--label-column", help="Dataset column with the label (default 'label').")
]
TaskDeviceOption = Annotated[
    Optional[str],
    typer.Option("--device", callback=check_device, help="cpu, cuda, cuda:1, mps; default: a GPU when there is one."),
]

# Artifacts given by folder or Hub id (compose, evaluate).
BodyOption = Annotated[Optional[str], typer.Option("--body", help="Body folder or Hub id.")]
PackOption = Annotated[Optional[str], typer.Option("--pack", help="Language pack folder or Hub id.")]
# The Hub commands (push, search).
HubTokenOption = Annotated[
    Optional[str], typer.Option("--token", help="Hub token (default: HF_TOKEN or the one saved by `hf auth login`).")
]

# --json, in the three wordings the commands use.
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
JsonResultsOption = Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")]
JsonSummaryOption = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]

# The fields PretrainConfig and TransferConfig share, named as the commands name their options.
_LOOP_FIELDS = ("max_steps", "max_minutes", "seq_len", "batch_size", "lr", "seed", "device", "checkpoint_every")


def loop_settings(params: dict) -> dict:
    """The training-loop fields of a step's config from a command's parameters (``ctx.params``); --quiet
    turns the progress bar off."""
    return {**{name: params[name] for name in _LOOP_FIELDS}, "progress": not params["quiet"]}


def require_text(text: Optional[list[str]], dataset: Optional[str]) -> None:
    """The training text comes from --text or --dataset: neither is a usage error."""
    if not text and dataset is None:
        raise typer.BadParameter("give at least one --text FILE (or --dataset NAME)", param_hint="--text")


def check_vocab_size(vocab_size: Optional[int], family: str, special_ids: Optional[dict] = None) -> None:
    """--vocab-size against the special tokens of ``family`` (at ``special_ids``, a body's), before any text is
    read or progress printed: the rule train_tokenizer applies (embswap/train/tokenizer.py)."""
    if vocab_size is None:
        return
    from embswap.architectures import get_family
    from embswap.train.tokenizer import special_token_list

    specials = len(special_token_list(get_family(family), special_ids))
    if vocab_size <= specials:
        raise typer.BadParameter(
            f"{vocab_size} leaves no room beyond the {specials} special tokens; give more than {specials}",
            param_hint="--vocab-size",
        )


def check_family(family: Optional[str]) -> None:
    """--family: one of the registered model families (embswap/architectures.py), before any work."""
    from embswap.architectures import supported_families

    if family is not None and family not in supported_families():
        raise typer.BadParameter(f"expected one of: {', '.join(supported_families())}", param_hint="--family")


def set_threads(threads: Optional[int]) -> None:
    """--threads: torch's CPU threads (at least 1); None leaves torch's own choice."""
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))


def task_dataset_options(dataset, config, split, text_column, pair_column, label_column) -> dict:
    """What ``embswap.tasks.data.load_rows`` takes from the dataset options; ``{}`` without --dataset."""
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
