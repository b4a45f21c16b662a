"""embswap: make a monolingual transformer speak new languages by swapping its token embeddings."""

from ._version import __version__
from .artifacts import Body, LanguagePack, TaskModule
from .compose import compose, export
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
from .multilang import MultiLanguageModel, load
from .split import split, split_model
from .store import Store

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
