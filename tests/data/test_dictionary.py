"""Bilingual word lists: TSV, dictd (FreeDict) on a tiny hand-built fixture, lemma lookup."""

import gzip

import pytest

from embswap.data import dictionary
from embswap.errors import DataError

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(number: int) -> str:
    """dictd's base-64 number encoding (most significant digit first, no padding)."""
    digits = ""
    while True:
        digits = _ALPHABET[number % 64] + digits
        number //= 64
        if not number:
            return digits


# Entries as FreeDict's TEI-to-dictd conversion prints them (deu-eng 2022.04.21 style).
ENTRIES = {
    "info": "00-database-info\nA tiny test dictionary.\n",
    "haus": (
        "Haus /hˈaʊs/ <neut, n, sg>\n"
        " [arch.] house <n>, home <n> [Br.]\n"
        "         Note: building\n"
        '      "ein Haus bauen"  - build a house\n'
        "   Synonyms: {Gebäude}, {Heim}\n"
        "\n"
        " see: {Häuser}\n"
    ),
    "gehen": ('gehen /ɡˈeːən/ <v, intr>\ngo <v>\n      "Lass uns gehen!"  - Let\'s go!\n see: {gehend}, {gegangen}\n'),
    "gehen2": "gehen /ɡˈeːən/ <v>\nwalk <v>; go <v>\n   Synonym: {laufen}\n",
    "bank": "Bank\n1. bench <n>\n2. bank <n>, [fin.] bank /bæŋk/ <n>\n",
}


@pytest.fixture
def dictd_files(tmp_path):
    """A .dict.dz (gzip, as dictzip is) and an .index with lowercased keys and a duplicate key."""
    body, offsets = b"", {}
    for name, text in ENTRIES.items():
        data = text.encode("utf-8")
        offsets[name] = (len(body), len(data))
        body += data
    dict_path = tmp_path / "freedict-deu-eng.dict.dz"
    with gzip.open(dict_path, "wb") as handle:
        handle.write(body)
    keys = [
        ("00-databaseinfo", "info"),
        ("bank", "bank"),
        ("gehen", "gehen"),
        ("gehen", "gehen2"),
        ("haus", "haus"),
        ("heim", "haus"),
    ]  # 'heim' indexes the Haus entry a second time
    index_path = tmp_path / "freedict-deu-eng.index"
    index_path.write_text(
        "".join(f"{key}\t{b64(offsets[n][0])}\t{b64(offsets[n][1])}\n" for key, n in keys),
        encoding="utf-8",
    )
    assert max(o for o, _ in offsets.values()) >= 64  # multi-digit offsets are exercised
    return index_path, dict_path


def test_read_dictd_fixture_exact(dictd_files):
    result = dictionary.read_dictd(*dictd_files)
    assert result == {
        "Bank": ["bench", "bank"],
        "gehen": ["go", "walk"],
        "Haus": ["house", "home"],
    }


def test_parse_entry_drops_notes_examples_and_tags():
    assert dictionary.parse_entry(ENTRIES["haus"]) == ["house", "home"]
    assert dictionary.headword(ENTRIES["haus"]) == "Haus"
    assert dictionary.headword("der (große) Tag /deːɐ/ <masc>\nthe big day\n") == "der (große) Tag"


def test_read_dictd_bad_index_names_file_and_line(dictd_files, tmp_path):
    index_path, dict_path = dictd_files
    bad = tmp_path / "bad.index"
    bad.write_text("haus\tAA\tB\ngehen\tA*\tB\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.index:2: 'A\*' is not a dictd base-64 number"):
        dictionary.read_dictd(bad, dict_path)
    far = tmp_path / "far.index"
    far.write_text("haus\t////\tB\n", encoding="utf-8")
    with pytest.raises(DataError, match="do not belong together"):
        dictionary.read_dictd(far, dict_path)


def test_find_freedict(tmp_path, dictd_files):
    index_path, dict_path = dictd_files
    assert dictionary.find_freedict("deu", "eng", root=tmp_path) == (index_path, dict_path)
    assert dictionary.find_freedict("eng", "deu", root=tmp_path) is None


def test_tsv_round_trip(tmp_path):
    words = {"Haus": ["house", "home"], "gehen": ["go"], "Straße": ["street", "road"]}
    path = tmp_path / "de-en.tsv"
    lines = ["# German-English", ""] + [f"{w}\t{t}" for w, ts in words.items() for t in ts]
    path.write_text("\n".join(lines + ["Haus\thouse", ""]), encoding="utf-8")  # duplicate sense
    assert dictionary.read_tsv(path) == words


def test_tsv_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "broken.tsv"
    path.write_text("# comment\nHaus\thouse\nKatze cat\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        dictionary.read_tsv(path)
    assert f"{path}:3" in str(err.value) and "Katze cat" in str(err.value)
    with pytest.raises(DataError, match="not found"):
        dictionary.read_tsv(tmp_path / "missing.tsv")


def test_lemma_candidates():
    assert dictionary.lemma_candidates("Hauses")[:2] == ["haus", "hause"]
    assert dictionary.lemma_candidates("Kindern") == ["kinder", "kind"]
    assert "mann" in dictionary.lemma_candidates("Männer")
    assert dictionary.lemma_candidates("Tag") == []  # no stem shorter than three characters


def test_russian_lemma_candidates_reach_the_citation_form():
    assert "господь" in dictionary.lemma_candidates("Господа")  # genitive -> nominative
    assert "земля" in dictionary.lemma_candidates("земли")
    assert dictionary.lemma_candidates("сказал")[0] == "сказать"  # past tense -> infinitive
    assert "говорить" in dictionary.lemma_candidates("говорит")
    assert "великий" in dictionary.lemma_candidates("великого")
    assert dictionary.lemma_candidates("дом") == []  # no stem shorter than three characters
    # German words keep the German rules: no Cyrillic endings are tried on them.
    assert dictionary.lemma_candidates("Hauses")[:2] == ["haus", "hause"]
    words = {"земля": ["earth", "land"], "сказать": ["say"]}
    assert dictionary.lookup(words, "земли") == ["earth", "land"]
    assert dictionary.lookup(words, "Сказала") == ["say"]


def test_pivot_and_merge_dictionaries():
    ru_de = {"дом": ["Haus", "Heim"], "земля": ["Erde"], "кот": ["Katze"]}
    de_en = {"Haus": ["house", "home", "building", "household"], "Heim": ["home", "hostel"], "Erde": ["earth"]}
    pivoted = dictionary.pivot_dictionary(ru_de, de_en)
    # Each pivot word gives its first three senses, in order, without repeats; no pivot entry, no word.
    assert pivoted == {"дом": ["house", "home", "building", "hostel"], "земля": ["earth"]}
    assert dictionary.pivot_dictionary(ru_de, de_en, max_senses=1) == {"дом": ["house", "home"], "земля": ["earth"]}
    direct = {"земля": ["land"], "я": ["I"]}
    assert dictionary.merge_dictionaries(direct, pivoted) == {
        "земля": ["land", "earth"],
        "я": ["I"],
        "дом": ["house", "home", "building", "hostel"],
    }


def test_lookup_exact_case_and_lemma():
    words = {"Haus": ["house"], "Kind": ["child"], "Mann": ["man"], "gehen": ["go"]}
    assert dictionary.lookup(words, "Haus") == ["house"]
    assert dictionary.lookup(words, "haus") == ["house"]  # uncased vocabulary, German noun
    assert dictionary.lookup(words, "GEHEN") == ["go"]
    assert dictionary.lookup(words, "Hauses") == ["house"]
    assert dictionary.lookup(words, "Kindern") == ["child"]
    assert dictionary.lookup(words, "Männer") == ["man"]
    assert dictionary.lookup(words, "Katze") == []
