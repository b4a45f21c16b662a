"""The exceptions embswap raises: one hierarchy, one-line messages that say what to do.

Every message names what was found, what was expected and the fix. The CLI prints ``str(err)``
as a single line (exit code 1) unless ``EMBSWAP_DEBUG=1`` asks for the traceback.
"""

from __future__ import annotations


class EmbswapError(Exception):
    """Base class of every error embswap raises on purpose."""


class ArtifactNotFoundError(EmbswapError, FileNotFoundError):
    """A path or Hub id that should hold an artifact does not exist."""


class CorruptArtifactError(EmbswapError, ValueError):
    """Files of an artifact are missing, extra, truncated or do not parse."""


class SchemaVersionError(EmbswapError, ValueError):
    """An artifact was written with an unknown or newer schema version."""


class IncompatibleArtifactError(EmbswapError, ValueError):
    """Two artifacts do not fit together (other body, other hidden size, other vocabulary)."""


class UnsupportedModelError(EmbswapError, ValueError):
    """A model family embswap does not know, or a model without what the method needs."""


class DataError(EmbswapError, ValueError):
    """Input data (text, task rows, parallel pairs, word lists) is malformed; names file and line."""


class TrainingError(EmbswapError, RuntimeError):
    """A training run cannot start or continue (bad resume state, diverged loss)."""


class ArtifactBusyError(EmbswapError, TimeoutError):
    """Another process holds an artifact path's lock (a save in progress) for longer than the timeout."""


class ArtifactWriteError(EmbswapError, OSError):
    """Saving an artifact failed (no space, file too large, no permission); the previous one is unchanged."""


class OutputPathError(EmbswapError, ValueError):
    """An output path names something a command may not replace: a file, other files, another kind, an input."""


class InvalidNameError(EmbswapError, ValueError):
    """A language code or artifact name that cannot be one plain folder name (see ``embswap.names``)."""
