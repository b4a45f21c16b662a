"""Resolving artifact locations: a local folder, or ``user/repo[@revision][:subfolder]`` on the Hub.

Downloads go through huggingface_hub's own cache and resolution (so ``HF_HUB_OFFLINE=1`` and a
pre-filled cache work); only safetensors, JSON and tokenizer files are fetched, never code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ArtifactNotFoundError

_HUB_SPEC = re.compile(r"^(?P<repo>[\w.\-]+/[\w.\-]+)(?:@(?P<revision>[^:]+))?(?::(?P<subfolder>.+))?$")
_ALLOWED_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "README.md"]


def parse_hub_spec(spec: str) -> tuple[str, str | None, str | None] | None:
    """``user/repo@rev:sub/folder`` -> (repo, revision, subfolder); None when it is not one."""
    match = _HUB_SPEC.match(spec)
    if not match:
        return None
    return match["repo"], match["revision"], match["subfolder"]


def resolve(location: str | os.PathLike, revision: str | None = None) -> Path:
    """A local folder for ``location``: the path itself, or a Hub snapshot of the repo/subfolder."""
    path = Path(location)
    if path.exists():
        return path
    spec = parse_hub_spec(str(location)) if not str(location).startswith((".", "/", "~")) else None
    if spec is None:
        raise ArtifactNotFoundError(f"{location} does not exist; pass an artifact folder or a Hub id user/repo[@revision][:subfolder]")
    repo, spec_revision, subfolder = spec
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = [f"{subfolder.strip('/')}/{p}" if subfolder else p for p in _ALLOWED_FILES]
    patterns += [f"{subfolder.strip('/')}/**/{p}" if subfolder else f"**/{p}" for p in _ALLOWED_FILES]
    try:
        root = snapshot_download(repo, revision=revision or spec_revision, allow_patterns=patterns)
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ArtifactNotFoundError(f"cannot fetch {location} from the Hub ({first}); check the id, your network or HF_HUB_OFFLINE") from None
    folder = Path(root) / subfolder if subfolder else Path(root)
    if not folder.exists():
        raise ArtifactNotFoundError(f"{repo} has no folder {subfolder!r}; list the repo's files to find the artifact")
    return folder
