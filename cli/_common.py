"""Helpers shared by the command modules: console on stderr, JSON on stdout, path parsing."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

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


def print_result(output: Path, record: dict, as_json: bool) -> None:
    """What a command that writes a folder prints on stdout: ``record`` with --json, else the folder's path."""
    if as_json:
        print_json(record)
    else:
        typer.echo(str(output))


def comma_list(value: str) -> list[str]:
    """The items of a comma-separated option value (--lang de,ru), stripped, empty ones dropped."""
    return [item.strip() for item in value.split(",") if item.strip()]


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
