"""The Typer app: command groups joined here; known errors become one line and exit code 1.

Every command module is imported and registered here by name, so a module that fails to import
stops the CLI at startup instead of leaving a command silently missing. The modules import torch,
transformers and the rest of the library inside their commands: `embswap --help` stays light.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys

import typer

from embswap.errors import EmbswapError

from . import artifacts as artifacts_cmds
from . import data as data_cmds
from . import demo as demo_cmds
from . import diagnose as diagnose_cmds
from . import evaluate as evaluate_cmds
from . import finetune as finetune_cmds
from . import hub as hub_cmds
from . import pretrain as pretrain_cmds
from . import tokenizer as tokenizer_cmds
from . import train as train_cmds
from . import verify as verify_cmds
from ._common import show_library_logs

app = typer.Typer(
    name="embswap",
    help="Swap token embeddings to make a monolingual transformer speak new languages.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _before_every_command() -> None:
    # no docstring: it would replace the app's help text
    show_library_logs()


app.command("split")(artifacts_cmds.split)
app.command("compose")(artifacts_cmds.compose)
app.command("inspect")(artifacts_cmds.inspect)
for _module in (
    tokenizer_cmds,
    train_cmds,
    pretrain_cmds,
    finetune_cmds,
    evaluate_cmds,
    data_cmds,
    demo_cmds,
    hub_cmds,
    verify_cmds,
    diagnose_cmds,
):
    _module.register(app)


def _one_line_errors(func):
    """Known errors become `error: <one line>` on stderr and exit code 1 (traceback with EMBSWAP_DEBUG=1)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except EmbswapError as err:
            if os.environ.get("EMBSWAP_DEBUG") == "1":
                raise
            typer.echo(f"error: {_printable(str(err)) or type(err).__name__}", err=True)
            raise typer.Exit(1) from None
        except (typer.TyperException, typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit, GeneratorExit):
            raise  # usage errors (exit 2), deliberate exits, Ctrl-C
        except BaseException as err:  # a bug or a case no check foresaw (a Rust panic is a BaseException): one line
            if os.environ.get("EMBSWAP_DEBUG") == "1":
                raise
            typer.echo(
                f"error: unexpected error ({type(err).__name__}): {_first_line(err)}; "
                "run with EMBSWAP_DEBUG=1 for the traceback",
                err=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def _printable(text: str) -> str:
    """``text`` on one line with control characters escaped: a path or name the user gave may hold ESC, CR or
    newlines, which would otherwise reach the terminal (or cut the message short)."""
    return text if text.isprintable() else repr(text)[1:-1]


def _first_line(err: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``err``'s message, control characters escaped, cut to ``limit``."""
    text = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    text = _printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _wrap_commands(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if not getattr(info.callback, "__wrapped__", None):
            info.callback = _one_line_errors(info.callback)
    for group in typer_app.registered_groups:
        _wrap_commands(group.typer_instance)


_wrap_commands(app)


def _tolerate_closed_output() -> None:
    """Output sent to a closed pipe (`embswap pretrain ... | head`) is dropped; the run and its save go on."""
    import signal

    from embswap.outputs import tolerate_closed

    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # such a write then raises (and is dropped) instead of killing us
    sys.stdout, sys.stderr = tolerate_closed(sys.stdout), tolerate_closed(sys.stderr)


def _leave_process_group() -> None:
    """Under torchrun or `accelerate launch`: leave the process group before the interpreter exits.

    Left to interpreter teardown, the group's background threads can outlive it and abort a rank
    (SIGABRT) after its work was saved, so the launcher reports the run as failed. torch.distributed
    is looked up, never imported: a command that did not train never loaded it.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def main() -> None:
    _tolerate_closed_output()
    try:
        _run()
    finally:
        _leave_process_group()


def _run() -> None:
    try:
        # Not standalone: click would print a usage error as a framed box; here it is one `error:` line.
        code = app(standalone_mode=False, prog_name="embswap")
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except typer.TyperException as err:  # click's usage errors (exit code 2) and the like
        if type(err).__name__ == "NoArgsIsHelpError":  # `embswap` or `embswap data` alone: show the help
            with contextlib.suppress(SystemExit):
                app(args=[*sys.argv[1:], "--help"], prog_name="embswap")
            sys.exit(2)
        typer.echo(f"error: {_printable(' '.join(err.format_message().split()))}", err=True)
        context = getattr(err, "ctx", None)
        if getattr(err, "exit_code", 1) == 2 and context is not None:
            typer.echo(f"try: {context.command_path} --help", err=True)
        sys.exit(getattr(err, "exit_code", 1))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
