"""embswap: make a monolingual transformer speak new languages by swapping its token embeddings."""

from __future__ import annotations

import importlib
import sys
import types

from ._version import __version__
from .errors import (
    ArtifactNotFoundError,
    CorruptArtifactError,
    DataError,
    EmbswapError,
    IncompatibleArtifactError,
    SchemaVersionError,
    TrainingError,
    UnsupportedModelError,
)

# Public names whose modules import torch / transformers: each is imported on first use, so
# `import embswap` (and `embswap --help`) stays light until a model is built.
_LAZY = {
    "Body": ".artifacts",
    "LanguagePack": ".artifacts",
    "TaskModule": ".artifacts",
    "Store": ".store",
    "MultiLanguageModel": ".multilang",
    "load": ".multilang",
    "compose": ".compose",
    "export": ".compose",
    "split": ".split",
    "split_model": ".split",
}

__all__ = [
    "__version__",
    "Body",
    "LanguagePack",
    "TaskModule",
    "Store",
    "MultiLanguageModel",
    "compose",
    "export",
    "load",
    "split",
    "split_model",
    "EmbswapError",
    "ArtifactNotFoundError",
    "CorruptArtifactError",
    "DataError",
    "IncompatibleArtifactError",
    "SchemaVersionError",
    "TrainingError",
    "UnsupportedModelError",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps `embswap.compose` and `embswap.split` the functions once their modules are imported.

    Importing a submodule binds it on the package under its own name; for the two submodules named
    like the function they define, the function is bound instead, as eager imports used to leave it.
    """

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == f".{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
