"""A language pack's tokenizer: read from its folder's own ``tokenizer.json`` alone, its ids checked
against the pack's matrix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import PreTrainedTokenizerFast

from .errors import CorruptArtifactError, IncompatibleArtifactError
from .io import load_json
from .safety import TOKENIZER_SETTINGS_FILES, max_token_id, tokenizer_settings

if TYPE_CHECKING:
    from .artifacts import LanguagePack


def load_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """A fast tokenizer from a tokenizer folder, read from the folder's own ``tokenizer.json`` alone.

    transformers' ``from_pretrained`` would open whatever files ``tokenizer_config.json`` names
    (``tokenizer_file``, ``vocab_file``, ...), wherever they are. Here the backend is the folder's
    tokenizer.json (hashed with the pack) and only non-file settings are passed on
    (``safety.tokenizer_settings``: special tokens, lengths, sides); a setting that names a file is
    refused. No remote code, no slow tokenizer, no conversion.
    """
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise CorruptArtifactError(f"{folder} has no tokenizer.json; the pack is incomplete")
    settings: dict = {}
    for name in TOKENIZER_SETTINGS_FILES:
        if os.path.lexists(folder / name):
            if not (folder / name).is_file():
                raise CorruptArtifactError(f"{folder / name} is not a regular file; do not use this tokenizer")
            settings.update(tokenizer_settings(folder / name, load_json(folder / name)))
    try:
        # tokenizer_file is this folder's own file; transformers leaves it out of a saved tokenizer_config.json
        return PreTrainedTokenizerFast(tokenizer_file=str(path), **settings)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # tokenizers raises plain Exception, and a Rust panic is a BaseException
        first = next((line.strip()[:200] for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise CorruptArtifactError(f"{folder}: the tokenizer does not load ({first}); the pack is corrupt") from None


def check_token_ids(pack: LanguagePack) -> None:
    """Every id the pack's tokenizer can produce has a row in its matrix.

    A larger id would fail in the middle of a run, or, in a multi-language model whose packs share
    one table, silently read another language's rows.
    """
    rows = pack.word_embeddings.shape[0]
    top, source = max_token_id(pack.tokenizer)
    if top < rows:
        return
    if len(pack.tokenizer) > rows:
        raise IncompatibleArtifactError(
            f"pack {pack.language!r}: the tokenizer has {len(pack.tokenizer)} tokens but the embedding matrix "
            f"has {rows} rows (id {top}, {source}, has none); train the tokenizer and the matrix together"
        )
    raise IncompatibleArtifactError(
        f"pack {pack.language!r}: the tokenizer can produce id {top} ({source}) but the embedding matrix has "
        f"{rows} rows (ids 0 to {rows - 1}); the tokenizer and the matrix do not belong together: do not use this pack"
    )
