"""Helpers shared by the command modules: console on stderr, JSON on stdout, path parsing."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console

# Progress and logs go to stderr; stdout is for results (tables, --json).
err_console = Console(stderr=True, soft_wrap=True)
out_console = Console(soft_wrap=True)


class _StderrLogHandler(logging.StreamHandler):
    """Log records as plain lines on sys.stderr as it is when each record comes (main() and test runners
    replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def show_library_logs(level: int = logging.INFO) -> None:
    """What a person sees of the library: its ``embswap.*`` log records from ``level`` up, on stderr."""
    logger = logging.getLogger("embswap")
    if not any(isinstance(handler, _StderrLogHandler) for handler in logger.handlers):
        logger.addHandler(_StderrLogHandler())
    logger.setLevel(level)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# Options every MLM training command (pretrain, transfer) shares, declared once.
MaxMinutesOption = Annotated[
    Optional[float], typer.Option("--max-minutes", help="Stop after this many minutes (checkpoint kept).")
]
SeqLenOption = Annotated[int, typer.Option("--seq-len", help="Tokens per training sequence.")]
# Commands that read an existing body: the default is 128 cut to what the body reads.
BodySeqLenOption = Annotated[
    Optional[int],
    typer.Option("--seq-len", help="Tokens per sequence (default: 128, or the body's positions when it reads fewer)."),
]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", help="Sequences per step (over all processes).")]
DeviceOption = Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, mps (default: a GPU if any).")]
CheckpointEveryOption = Annotated[int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")]
ThreadsOption = Annotated[Optional[int], typer.Option("--threads", help="CPU threads for torch.")]
