"""The Typer app: command groups joined here; known errors become one line and exit code 1."""

from __future__ import annotations

import functools
import os
import sys

import typer

from embswap.errors import EmbswapError

from . import artifacts as artifacts_cmds

app = typer.Typer(
    name="embswap",
    help="Swap token embeddings to make a monolingual transformer speak new languages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.command("split")(artifacts_cmds.split)
app.command("compose")(artifacts_cmds.compose)
app.command("inspect")(artifacts_cmds.inspect)


def _register_optional() -> None:
    """Command modules that later parts of the pipeline add; each registers itself."""
    import importlib

    for name in ("tokenizer", "train", "pretrain", "tasks", "data", "demo", "hub", "verify", "diagnose"):
        try:
            module = importlib.import_module(f"embswap.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"embswap.cli.{name}":
                continue
            raise
        module.register(app)


def _one_line_errors(func):
    """Known errors become `error: <one line>` on stderr and exit code 1 (traceback with EMBSWAP_DEBUG=1)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EmbswapError as err:
            if os.environ.get("EMBSWAP_DEBUG") == "1":
                raise
            typer.echo(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def _wrap_commands(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if not getattr(info.callback, "__wrapped__", None):
            info.callback = _one_line_errors(info.callback)
    for group in typer_app.registered_groups:
        _wrap_commands(group.typer_instance)


_register_optional()
_wrap_commands(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
