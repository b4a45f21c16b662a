"""What Body, LanguagePack and TaskModule share: one folder format, saved and loaded through two hooks.

A subclass writes ``_write`` (its files, returning its config fields) and ``_read`` (an instance
from a verified folder and config) and gets ``save_pretrained``, ``from_pretrained`` (local folders
and the Hub) and ``push_to_hub``, in the spirit of huggingface_hub's ``ModelHubMixin``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import torch

from . import hub
from .io import atomic_folder, load_tensors, locate, read_config, read_consistently, write_config
from .outputs import check_output
from .safety import check_representable


class Artifact:
    kind: ClassVar[str]

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the artifact folder atomically; returns its path."""
        check_output(path, self.kind)  # before any folder is made: never inside an artifact, never over other files
        with atomic_folder(path) as tmp:
            fields = self._write(tmp)
            write_config(tmp, self.kind, fields)
        return Path(path)

    @classmethod
    def from_pretrained(cls, location: str | os.PathLike, revision: str | None = None, *, verify: bool = True):
        """Load from a local folder or ``user/repo[@revision][:subfolder]`` on the Hub.

        ``verify`` checks every file against the SHA-256 its config records (streaming); a read
        that overlapped a save of the same path is repeated, so it sees one whole artifact.
        """
        folder = locate(location, lambda: hub.resolve(location, revision))
        return read_consistently(folder, lambda: cls._read(folder, read_config(folder, cls.kind, verify=verify)))

    def push_to_hub(self, repo_id: str, **options):
        """Upload to the Hub as one commit with a generated model card; ``options`` (``private``, ``revision``,
        ``subfolder``, ``token``, ``commit_message``, card options) as ``embswap.hub.push_folder``'s."""
        return hub.push_artifact(self, repo_id, **options)

    def _write(self, folder: Path) -> dict:
        raise NotImplementedError

    @classmethod
    def _read(cls, folder: Path, config: dict):
        raise NotImplementedError


def load_weights(path: Path, **options) -> dict[str, torch.Tensor]:
    """``load_tensors`` refusing NaN and Inf, and finite values that would be Inf in float32 (the precision
    models are built in: a float64 1e306 passes the NaN/Inf check and then breaks every output)."""
    tensors = load_tensors(path, check_finite_values=True, **options)
    check_representable(
        tensors,
        torch.float32,
        owner=str(path),
        precision="float32, the precision embswap computes in",
        advice="the weights are damaged or out of range: save them again in float32",
    )
    return tensors
