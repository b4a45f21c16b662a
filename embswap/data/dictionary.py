"""Bilingual word lists for dictionary-based initialisation of new embeddings (as in WECHSEL).

Two formats: a plain ``word<TAB>translation`` TSV that users write by hand, and the dictd files
of the FreeDict dictionaries that Debian ships (``apt-get download dict-freedict-deu-eng`` and
``dpkg-deb -x`` read them without installing). Both give ``word -> [translation, ...]`` with the
senses in the dictionary's order, so a caller can take the first or average over all.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from embswap.errors import DataError

DICTD_DIR = Path("/usr/share/dictd")

# dictd numbers are base 64, most significant digit first, with this alphabet (no padding).
_B64 = {ch: i for i, ch in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}

# Lines of a FreeDict entry that are not translations.
_NOT_TRANSLATION = re.compile(r"^\s*(?:Note:|Notes:|Synonyms?:|see:|See also:|Example:)|^\s{4,}[\"„]")
_SENSE_NUMBER = re.compile(r"^\d+\.\s+")
_TAG = re.compile(r"\[[^\]]*\]|<[^>]*>|\{[^}]*\}")  # [domain], <n, masc>, {cross-reference}
_PRONUNCIATION = re.compile(r"(?:^|\s)/[^/,]+/(?=\s|,|;|$)")

# German-oriented inflection endings, longest first; generic enough for other suffixing languages.
_SUFFIXES = ("es", "en", "em", "er", "s", "n", "e")
_UMLAUTS = str.maketrans({"ä": "a", "ö": "o", "ü": "u"})

_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
# Russian inflection endings, longest first, and the citation endings a stem may take back:
# nouns list the nominative singular, adjectives the masculine -ый/-ий/-ой, verbs the infinitive.
_RU_ENDINGS = (
    "ями",
    "ами",
    "ого",
    "его",
    "ому",
    "ему",
    "ыми",
    "ими",
    "ешь",
    "ишь",
    "ете",
    "ите",
    "ала",
    "яла",
    "ила",
    "ела",
    "али",
    "яли",
    "или",
    "ели",
    "ах",
    "ях",
    "ам",
    "ям",
    "ом",
    "ем",
    "ой",
    "ей",
    "ов",
    "ев",
    "ую",
    "юю",
    "ая",
    "яя",
    "ое",
    "ее",
    "ые",
    "ие",
    "ых",
    "их",
    "ет",
    "ит",
    "ют",
    "ут",
    "ат",
    "ят",
    "ал",
    "ял",
    "ил",
    "ел",
    "а",
    "я",
    "у",
    "ю",
    "ы",
    "и",
    "е",
    "о",
    "ь",
    "й",
)
_RU_NOUN_CITATION = ("", "а", "я", "ь", "о", "е", "й", "ый", "ий", "ой")
_RU_VERB_CITATION = ("ть", "ать", "ять", "ить", "еть")
_RU_CITATION = {
    e: (e[0] + "ть", *_RU_VERB_CITATION)
    for e in ("ал", "ял", "ил", "ел", "ала", "яла", "ила", "ела", "али", "яли", "или", "ели")
}
_RU_CITATION.update(
    {e: _RU_VERB_CITATION + _RU_NOUN_CITATION for e in ("ешь", "ишь", "ете", "ите", "ет", "ит", "ют", "ут", "ат", "ят")}
)
_RU_CITATION.update(
    {
        e: ("ый", "ий", "ой", *_RU_NOUN_CITATION)
        for e in ("ого", "его", "ому", "ему", "ыми", "ими", "ую", "юю", "ая", "яя", "ое", "ее", "ые", "ие", "ых", "их")
    }
)


def read_tsv(path: str | Path) -> dict[str, list[str]]:
    """Read ``word<TAB>translation`` lines; repeated words add senses in file order.

    Blank lines and lines starting with ``#`` are skipped. A line without exactly one tab between
    two non-empty fields raises :class:`DataError` naming the file and line number.
    """
    path = Path(path)
    out: dict[str, list[str]] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [field.strip() for field in line.rstrip("\r\n").split("\t")]
        if len(fields) != 2 or not all(fields):
            raise DataError(f"{path}:{number}: expected 'word<TAB>translation', got {stripped[:80]!r}")
        senses = out.setdefault(fields[0], [])
        if fields[1] not in senses:
            senses.append(fields[1])
    return out


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"word list not found: {path}") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def _b64_number(text: str, where: str) -> int:
    value = 0
    for ch in text:
        if ch not in _B64:
            raise DataError(f"{where}: {text!r} is not a dictd base-64 number (A-Za-z0-9+/)")
        value = value * 64 + _B64[ch]
    return value


def _read_index(index_path: Path) -> list[tuple[str, int, int]]:
    """(headword, offset, length) for every line of a dictd ``.index`` file, in file order."""
    entries = []
    for number, line in enumerate(_read_lines(index_path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            raise DataError(f"{index_path}:{number}: expected 'word<TAB>offset<TAB>length'")
        where = f"{index_path}:{number}"
        entries.append((fields[0], _b64_number(fields[1], where), _b64_number(fields[2], where)))
    return entries


def _read_dict_bytes(dict_path: Path) -> bytes:
    """The uncompressed dictionary body; ``.dz`` (dictzip) is gzip-compatible."""
    try:
        if dict_path.suffix == ".dz":
            with gzip.open(dict_path, "rb") as handle:
                return handle.read()
        return dict_path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"dictd data file not found: {dict_path}") from None
    except (OSError, EOFError) as err:
        raise DataError(f"{dict_path}: cannot decompress dictd data ({err})") from None


def headword(entry: str) -> str:
    """The headword of an entry's first line: text before the pronunciation or grammar notes."""
    first = entry.lstrip("\n").split("\n", 1)[0]
    for mark in (" /", " <"):  # parentheses may belong to the headword: 'der (große) Tag'
        if mark in first:
            return first.split(mark, 1)[0].strip()
    return first.strip()


def parse_entry(entry: str) -> list[str]:
    """Single translations from one FreeDict plain-text entry, in order, without duplicates.

    The first line is the headword (with ``/pronunciation/`` and ``<pos>``); then come sense lines,
    plain or numbered ``1. ...``, each a comma- or semicolon-separated list. Notes, synonyms,
    cross-references, quoted examples, ``[domain]`` labels and ``<grammar>`` tags are dropped.
    """
    out: list[str] = []
    for line in entry.strip("\n").split("\n")[1:]:
        if not line.strip() or _NOT_TRANSLATION.match(line):
            continue
        sense = _SENSE_NUMBER.sub("", line.strip())
        sense = _PRONUNCIATION.sub(" ", _TAG.sub(" ", sense))
        for item in re.split(r"[,;]", sense):
            item = " ".join(item.split())
            if item and item not in out:
                out.append(item)
    return out


def read_dictd(index_path: str | Path, dict_path: str | Path) -> dict[str, list[str]]:
    """Read a dictd dictionary (``.index`` + ``.dict.dz``) into ``headword -> translations``.

    Each entry is parsed once even when the index lists it under several keys (dictd indexes
    lowercased forms and abbreviations); it is filed under its own headword as printed in the
    entry, so ``Haus`` keeps its capital. Entries sharing a headword add senses in index order.
    The ``00-database...`` metadata entries are skipped.
    """
    index_path, dict_path = Path(index_path), Path(dict_path)
    body = _read_dict_bytes(dict_path)
    out: dict[str, list[str]] = {}
    seen: set[tuple[int, int]] = set()
    for key, offset, length in _read_index(index_path):
        if key.startswith("00-database") or key.startswith("00database") or (offset, length) in seen:
            continue
        seen.add((offset, length))
        if offset + length > len(body):
            raise DataError(
                f"{index_path}: entry {key!r} points past the end of {dict_path} "
                f"({offset}+{length} > {len(body)} bytes); the two files do not belong together"
            )
        entry = body[offset : offset + length].decode("utf-8", errors="replace")
        translations = parse_entry(entry)
        if not translations:
            continue
        senses = out.setdefault(headword(entry) or key, [])
        senses.extend(t for t in translations if t not in senses)
    return out


def find_freedict(src: str, tgt: str, root: str | Path = DICTD_DIR) -> tuple[Path, Path] | None:
    """``(index, dict)`` paths of an installed FreeDict ``src``-``tgt`` dictionary, or ``None``.

    Codes are FreeDict's three-letter ones, e.g. ``find_freedict("deu", "eng")``.
    """
    root = Path(root)
    index = root / f"freedict-{src}-{tgt}.index"
    for name in (f"freedict-{src}-{tgt}.dict.dz", f"freedict-{src}-{tgt}.dict"):
        if index.is_file() and (root / name).is_file():
            return index, root / name
    return None


def lemma_candidates(word: str) -> list[str]:
    """Possible base forms of an inflected word, most likely first (lowercased).

    Strips one German-style ending (-es, -en, -em, -er, -s, -n, -e), then optionally a second
    (``Kindern`` -> ``kinder`` -> ``kind``), and adds un-umlauted stems (``Männer`` -> ``mann``).
    Cyrillic words get Russian endings instead (:func:`russian_lemma_candidates`). Stems shorter
    than three characters are not offered. Cheap and imprecise on purpose: it only runs when a
    word list has no entry for the form itself.
    """
    lower = word.lower()
    if _CYRILLIC.search(lower):
        return russian_lemma_candidates(lower)
    first = [lower[: -len(s)] for s in _SUFFIXES if lower.endswith(s) and len(lower) - len(s) >= 3]
    second = [stem[: -len(s)] for stem in first for s in _SUFFIXES if stem.endswith(s) and len(stem) - len(s) >= 3]
    out: list[str] = []
    for stem in first + second:
        for form in (stem, stem.translate(_UMLAUTS)):
            if form != lower and form not in out:
                out.append(form)
    return out


def russian_lemma_candidates(word: str) -> list[str]:
    """Dictionary forms a Russian word may come from, most likely first (lowercased).

    Russian inflects by ending and dictionaries list the nominative singular or the infinitive:
    strip one case / person / past-tense ending, then re-attach each citation ending
    (``Господа`` -> ``господь``, ``земли`` -> ``земля``, ``сказал`` -> ``сказать``). Stems shorter
    than three characters are not offered; many candidates are wrong, but only the first that a
    word list actually holds is used.
    """
    lower = word.lower()
    out: list[str] = []
    for ending in _RU_ENDINGS:
        if not lower.endswith(ending) or len(lower) - len(ending) < 3:
            continue
        stem = lower[: len(lower) - len(ending)]
        for citation in _RU_CITATION.get(ending, _RU_NOUN_CITATION):
            form = stem + citation
            if form != lower and form not in out:
                out.append(form)
    return out


def pivot_dictionary(
    source_to_pivot: dict[str, list[str]], pivot_to_target: dict[str, list[str]], max_senses: int = 3
) -> dict[str, list[str]]:
    """Chain two word lists through a pivot language: ``ru -> de`` and ``de -> en`` give ``ru -> en``.

    Debian's only Russian-English list has ~1,200 entries; German-Russian with German-English
    covers twice as many frequent Bible words. Each pivot word is looked up with
    :func:`lookup` (lemma candidates included) and contributes its first ``max_senses``
    translations, so a word's own senses come before the long tails of its pivots'.
    """
    out: dict[str, list[str]] = {}
    for word, pivots in source_to_pivot.items():
        senses: list[str] = []
        for pivot in pivots:
            for translation in lookup(pivot_to_target, pivot)[:max_senses]:
                if translation not in senses:
                    senses.append(translation)
        if senses:
            out[word] = senses
    return out


def merge_dictionaries(*dictionaries: dict[str, list[str]]) -> dict[str, list[str]]:
    """One word list from several: a word's senses from earlier lists first, no duplicates."""
    out: dict[str, list[str]] = {}
    for words in dictionaries:
        for word, senses in words.items():
            merged = out.setdefault(word, [])
            merged.extend(s for s in senses if s not in merged)
    return out


def lookup(dictionary: dict[str, list[str]], word: str) -> list[str]:
    """Translations of ``word``: exact form, lowercase, capitalised, then lemma candidates.

    The capitalised try finds German nouns from an uncased vocabulary (``haus`` -> ``Haus``).
    Returns ``[]`` when nothing matches.
    """
    tries = [word, word.lower(), word[:1].upper() + word[1:].lower()]
    for stem in lemma_candidates(word):
        tries += [stem, stem[:1].upper() + stem[1:]]
    for form in tries:
        if form in dictionary:
            return list(dictionary[form])
    return []
