"""Language codes and artifact names: the one rule the CLI and the library both apply.

A name becomes a folder (``STORE/packs/<name>``, ``STORE/tasks/<name>``) and is recorded in
configs, so it must be one plain path component on every system: ASCII letters and digits plus
``-``, ``_``, ``.``, ``~`` and ``+`` (the benchmarks' ``de~mlm+align~rand~s0``, ``classification~lr2e-05~s0``),
starting with a letter or digit (so never ``.``, ``..``, a hidden ``.embswap-*`` leftover or an
option-like ``-x``), at most 100 characters. Light on purpose: the CLI checks names before it
imports torch.
"""

from __future__ import annotations

import re

from .errors import InvalidNameError

MAX_NAME_LENGTH = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~+-]*")
NAME_RULE = (
    f"1 to {MAX_NAME_LENGTH} ASCII letters, digits, '-', '_', '.', '~' or '+', starting with a letter or digit "
    "(e.g. de, en-robust-1, genre)"
)


def is_valid_name(name: object) -> bool:
    """True for a language code or artifact name that :func:`check_name` accepts."""
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) is not None


def check_name(name: object, what: str = "name") -> str:
    """``name`` itself, or an InvalidNameError saying which names are allowed (``what``: "language code", ...)."""
    if not is_valid_name(name):
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:59] + "…"  # repr escapes control characters
        raise InvalidNameError(f"{what} {shown} is not allowed: use {NAME_RULE}")
    return name
