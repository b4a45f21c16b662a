"""A store: one body, its language packs and its task modules in one folder.

Layout: ``body/``, ``packs/<language>/``, ``tasks/<name>/``. Everything else in embswap can be
pointed at a store instead of at single artifacts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from .artifacts import Body, LanguagePack, TaskModule
from .constants import STORE_BODY, STORE_PACKS, STORE_TASKS
from .errors import ArtifactNotFoundError
from .io import read_config
from .layout import listed_folders
from .names import check_name
from .outputs import STORE, check_output

_ArtifactT = TypeVar("_ArtifactT", LanguagePack, TaskModule)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class Store:
    """Opens and lists the artifacts of a store folder (created on first save)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @classmethod
    def of_body(cls, body: str | os.PathLike | None) -> Store | None:
        """The store a body folder lies in (``STORE/body`` -> ``STORE``); None for any other location."""
        path = Path(body) if body is not None else None
        return cls(path.parent) if path is not None and path.name == STORE_BODY and path.is_dir() else None

    @property
    def body_path(self) -> Path:
        return self.path / STORE_BODY

    def pack_path(self, language: str) -> Path:
        """``packs/<language>``; a name that is not one plain folder name is refused (``embswap.names``)."""
        return self.path / STORE_PACKS / check_name(language, "pack name")

    def task_path(self, name: str) -> Path:
        return self.path / STORE_TASKS / check_name(name, "task name")

    def _listing(self, sub: str) -> list[str]:
        return [p.name for p in listed_folders(self.path / sub)]

    @property
    def languages(self) -> list[str]:
        return self._listing(STORE_PACKS)

    @property
    def task_names(self) -> list[str]:
        return self._listing(STORE_TASKS)

    def reference_language(
        self, language: str, *, recorded: str | None = None, exclude: Iterable[str] = ()
    ) -> str | None:
        """The pack a pack of ``language`` is read against (its L1: what its init copies rows from), by name.

        ``recorded`` (the reference a trained pack's provenance names) when the store holds it, else the
        store's only pack besides ``language`` and ``exclude``; None when neither decides.
        """
        languages = self.languages
        if recorded in languages:
            return recorded
        skipped = {language, *exclude}
        others = [name for name in languages if name not in skipped]
        return others[0] if len(others) == 1 else None

    @cached_property
    def body(self) -> Body:
        if not self.body_path.exists():
            raise ArtifactNotFoundError(
                f"store {self.path} has no body; create one with `embswap split` or `embswap pretrain`"
            )
        return Body.from_pretrained(self.body_path)

    def pack(self, language: str) -> LanguagePack:
        return self._open(LanguagePack, self.pack_path(language), "pack", STORE_PACKS, "transfer")

    def task(self, name: str) -> TaskModule:
        return self._open(TaskModule, self.task_path(name), "task", STORE_TASKS, "finetune")

    def _open(self, cls: type[_ArtifactT], path: Path, what: str, sub: str, command: str) -> _ArtifactT:
        """``cls`` loaded from ``path``; a missing one is an error listing the store's ``sub`` folders."""
        if not path.exists():
            raise ArtifactNotFoundError(
                f"store {self.path} has no {what} {path.name!r} (it has: {', '.join(self._listing(sub)) or 'none'}); "
                f"train one with `embswap {command}`"
            )
        return cls.from_pretrained(path)

    def _writable(self, path: Path, kind: str) -> Path:
        """The store folder holds only a store, and ``path`` in it is missing or ``kind`` (``outputs.check_output``)."""
        check_output(self.path, STORE)
        return check_output(path, kind)

    def save_body(self, body: Body) -> Path:
        self.__dict__.pop("body", None)
        return body.save_pretrained(self._writable(self.body_path, "body"))

    def save_pack(self, pack: LanguagePack, name: str | None = None) -> Path:
        return pack.save_pretrained(
            self._writable(self.pack_path(pack.language if name is None else name), "language_pack")
        )

    def save_task(self, name: str, task: TaskModule) -> Path:
        return task.save_pretrained(self._writable(self.task_path(name), "task_module"))

    def inventory(self) -> list[dict]:
        """One row per artifact: kind, name, bytes and what its config says about it."""
        rows = []
        entries = [("body", "body", self.body_path)] if self.body_path.exists() else []
        entries += [("language_pack", lang, self.pack_path(lang)) for lang in self.languages]
        entries += [("task_module", name, self.task_path(name)) for name in self.task_names]
        for kind, name, path in entries:
            config = read_config(path, kind)
            rows.append({"kind": kind, "name": name, "path": str(path), "bytes": folder_bytes(path), "config": config})
        return rows
