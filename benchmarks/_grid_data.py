"""Where the quality benchmarks read their data: Bible text, parallel pairs, task rows and the built
tokenizers of a grid's work folder (``_grid.py``), and what an artifact's config records."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch
from _variants import RELEARN_TRANSLATIONS, ROBUST, SELF

from embswap.errors import EmbswapError


def _bible():
    from embswap.data import bible

    return bible


def _subsample_ids(ids: Sequence[str], n: int, seed: int = 0) -> set[str]:
    ids = sorted(set(ids))
    if len(ids) <= n:
        return set(ids)
    generator = torch.Generator().manual_seed(seed)
    return {ids[i] for i in torch.randperm(len(ids), generator=generator)[:n].tolist()}


def _provenance(artifact: Path) -> dict:
    """The provenance an artifact's config.json records (empty when it does not exist)."""
    config = artifact / "config.json"
    return json.loads(config.read_text()).get("provenance", {}) if config.is_file() else {}


def _rows_digest(rows: Sequence[dict]) -> str:
    return hashlib.sha256(json.dumps([r["id"] for r in rows]).encode()).hexdigest()[:8]


class GridData:
    """The texts, pairs and rows a grid's jobs read (a mixin of ``_grid.Grid``: needs ``budget``,
    ``folder`` and ``genre_languages``)."""

    def texts(self, name: str) -> list[str]:
        bible = _bible()
        if name in (SELF, ROBUST):
            texts = [v.text for code in RELEARN_TRANSLATIONS for v in bible.verses(code)]
        elif name == "en":
            texts = [v.text for code in self.budget.english_translations for v in bible.verses(code)]
        else:
            texts = bible.mlm_text(name)
        return texts[: self.budget.max_lines] if self.budget.max_lines else texts

    def parallel(self, language: str) -> list[dict]:
        bible = _bible()
        codes = RELEARN_TRANSLATIONS if language in (SELF, ROBUST) else bible.LANGUAGES[language]
        pairs = [p for code in codes for p in bible.parallel_pairs("4", code, books=bible.split_books("train"))]
        return pairs[: self.budget.max_pairs] if self.budget.max_pairs else pairs

    def train_rows(self, task: str) -> list[dict]:
        bible = _bible()
        rows = bible.genre_examples("en", "train") if task == "genre" else bible.paraphrase_examples("en", "train")
        if self.budget.max_train_rows:
            keep = _subsample_ids([r["id"] for r in rows], self.budget.max_train_rows)
            rows = [r for r in rows if r["id"] in keep]
        return rows

    def labels(self, task: str) -> list[str]:
        return list(_bible().GENRES) if task == "genre" else ["different", "paraphrase"]

    @lru_cache(maxsize=None)  # noqa: B019 - one Grid lives for the whole run; its rows are meant to stay
    def test_rows(self, task: str, language: str) -> tuple[list[dict], str]:
        """The held-out rows of ``task`` in ``language`` (same ids in every genre language) and their id."""
        bible = _bible()
        if task == "genre":
            rows = bible.genre_examples(language, "test", common=["en", *self.genre_languages])
            n = self.budget.eval_examples
        else:
            rows = bible.paraphrase_examples(language, "test")
            n = self.budget.eval_examples // 2  # two rows (paraphrase, different) per verse
        keep = _subsample_ids([r["id"] for r in rows], n)
        rows = [r for r in rows if r["id"] in keep]
        return rows, f"{task}-{language}-{len(rows)}-{_rows_digest(rows)}"

    def majority(self, task: str) -> dict:
        from embswap.evaluate import majority_baseline

        return majority_baseline(self.train_rows(task), self.test_rows(task, "en")[0])

    def tokenizer(self, name: str):
        from embswap.artifacts import load_tokenizer

        folder = self.folder / "tokenizers" / name
        if not (folder / "tokenizer.json").is_file():
            raise EmbswapError(f"tokenizer {name!r} is not built yet (phase order)")
        return load_tokenizer(folder)
