"""Bilingual word lists for dictionary init: Debian's FreeDict dictionaries, fetched without root.

``dict-freedict-<l2>-eng`` is read where it is installed, else downloaded with ``apt-get download``
and unpacked with ``dpkg-deb -x`` into a cache folder; a language that only has ``eng-<l2>`` gets that
list read backwards, labelled "(inverted)"; a language with neither has no dictionary (the benchmark
says "n/a", it never substitutes another init). Parsed lists are cached as JSON (deu-eng: ~10 s to parse).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from _common import write_atomic

# FreeDict's codes; Debian ships deu-eng, fra-eng, spa-eng, ita-eng and only eng-rus / eng-hin.
FREEDICT = {"de": "deu", "fr": "fra", "es": "spa", "it": "ita", "ru": "rus", "hi": "hin", "zh": "zho"}


def _dictd_cache() -> Path:
    return Path(os.environ.get("EMBSWAP_CACHE", Path.home() / ".cache" / "embswap")) / "freedict"


@lru_cache(maxsize=None)
def freedict(src: str, tgt: str) -> tuple[dict, str] | None:
    """A FreeDict word list ``src -> tgt`` (installed, cached, or fetched with apt-get), or None."""
    from embswap.data.dictionary import find_freedict, read_dictd

    parsed = _dictd_cache() / f"{src}-{tgt}.json"
    if parsed.is_file():
        return json.loads(parsed.read_text(encoding="utf-8")), f"freedict-{src}-{tgt}"
    paths = find_freedict(src, tgt) or find_freedict(src, tgt, _dictd_cache() / "usr/share/dictd")
    if paths is None and _apt_fetch(f"dict-freedict-{src}-{tgt}", _dictd_cache()):
        paths = find_freedict(src, tgt, _dictd_cache() / "usr/share/dictd")
    if paths is None:
        return None
    words = read_dictd(*paths)
    write_atomic(parsed, json.dumps(words, ensure_ascii=False))  # parsing deu-eng takes ~10 s: do it once
    return words, f"freedict-{src}-{tgt}"


def _apt_fetch(package: str, into: Path) -> bool:
    """``apt-get download`` + ``dpkg-deb -x`` into ``into`` (no root install); False when unavailable."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        return False
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True, capture_output=True, timeout=180)
            for deb in Path(tmp).glob("*.deb"):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], check=True, capture_output=True, timeout=180)
        except (subprocess.SubprocessError, OSError):
            return False
    return True


def invert_dictionary(words: dict[str, list[str]]) -> dict[str, list[str]]:
    """An English -> L2 list read backwards: each single-word L2 sense lists its English headwords."""
    out: dict[str, list[str]] = {}
    for english, senses in words.items():
        for sense in senses:
            if sense and " " not in sense.strip() and english not in out.setdefault(sense.strip(), []):
                out[sense.strip()].append(english)
    return out


# Pivot languages for an L2 whose own English list is small: FreeDict has pivot-L2 and pivot-eng.
PIVOTS = ("deu", "fra")


@lru_cache(maxsize=None)
def dictionary_for(language: str) -> tuple[dict, str] | None:
    """``(word list L2 -> English, label)``: FreeDict L2-eng; else eng-L2 inverted, merged with the
    lists chained through each pivot language P that has P-L2 and P-eng (Russian: 1,204 inverted
    entries alone; with the German and French pivots 665 of the 1,000 most frequent Bible words
    find a translation, against 279); else None. The label names every part."""
    code = FREEDICT.get(language)
    if code is None:
        return None
    found = freedict(code, "eng")
    if found is not None:
        return found
    from embswap.data.dictionary import merge_dictionaries, pivot_dictionary

    parts, labels = [], []
    found = freedict("eng", code)
    if found is not None:
        parts.append(invert_dictionary(found[0]))
        labels.append(f"{found[1]} (inverted)")
    for pivot in PIVOTS:
        to_pivot, from_pivot = freedict(pivot, code), freedict(pivot, "eng")
        if to_pivot is not None and from_pivot is not None:
            parts.append(pivot_dictionary(invert_dictionary(to_pivot[0]), from_pivot[0]))
            labels.append(f"{to_pivot[1]} (inverted) ∘ {from_pivot[1]}")
    if not parts:
        return None
    return merge_dictionaries(*parts), " + ".join(labels)


def dictionary_digest(words: dict[str, list[str]]) -> str:
    """Eight hex characters of SHA-256 over the word list (sorted): names the packs learned from it."""
    import hashlib

    text = json.dumps(words, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
