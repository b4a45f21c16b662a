"""Task readers: JSONL, SQuAD JSON, datasets tables, named sources; bad rows name file, line, field."""

import json

import pytest

from embswap.errors import DataError
from embswap.tasks import data as task_data
from embswap.tasks.data import (
    DatasetColumns,
    check_labels_subset,
    label_names,
    load_rows,
    read_jsonl,
    read_squad,
    rows_from_dataset,
)


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_classification_and_pairs(tmp_path):
    path = _jsonl(tmp_path / "t.jsonl", [{"text": "a", "label": 1, "id": "x"}, "", {"text": "b", "label": "neg"}])
    rows = read_jsonl(path, "classification")
    assert [r["label"] for r in rows] == ["1", "neg"]
    assert rows[0]["id"] == "x"
    pairs = _jsonl(tmp_path / "p.jsonl", [{"text": "a", "text_pair": "b", "label": "same"}])
    assert read_jsonl(pairs, "pair-classification") == [{"text": "a", "text_pair": "b", "label": "same"}]


@pytest.mark.parametrize(
    "bad, task, needle",
    [
        ({"label": "x"}, "classification", "missing field 'text'"),
        ({"text": "", "label": "x"}, "classification", "field 'text' is empty"),
        ({"text": 3, "label": "x"}, "classification", "field 'text' must be a string"),
        ({"text": "a"}, "classification", "missing field 'label'"),
        ({"text": "a", "label": [1]}, "classification", "field 'label' must be a string or an integer"),
        ({"text": "a", "label": True}, "classification", "field 'label'"),
        ({"text": "a", "label": "x"}, "pair-classification", "missing field 'text_pair'"),
        ("{not json", "classification", "not valid JSON"),
        ("[1, 2]", "classification", "expected a JSON object"),
    ],
)
def test_bad_jsonl_row_names_file_line_field(tmp_path, bad, task, needle):
    good = {"text": "fine", "text_pair": "fine", "label": "x"}
    path = _jsonl(tmp_path / "bad.jsonl", [good, good, bad])
    with pytest.raises(DataError) as info:
        read_jsonl(path, task)
    message = str(info.value)
    assert f"{path}:3:" in message
    assert needle in message
    assert "\n" not in message


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_jsonl(tmp_path / "nope.jsonl", "classification")
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="holds no rows"):
        read_jsonl(tmp_path / "empty.jsonl", "classification")


def _squad(path, answer_start=15):
    context = "The cat sat on the mat near the river."
    doc = {
        "version": "1.1",
        "data": [
            {
                "title": "t",
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {
                                "id": "q1",
                                "question": "Where did the cat sit?",
                                "answers": [{"text": "the mat", "answer_start": answer_start}],
                            },
                            {
                                "id": "q2",
                                "question": "Who sat?",
                                "answers": [{"text": "cat", "answer_start": 4}, {"text": "The cat", "answer_start": 0}],
                            },
                        ],
                    }
                ],
            }
        ],
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_squad_reader(tmp_path):
    rows = read_squad(_squad(tmp_path / "s.json"))
    assert [r["id"] for r in rows] == ["q1", "q2"]
    assert rows[1]["answers"] == {"text": ["cat", "The cat"], "answer_start": [4, 0]}
    assert load_rows(tmp_path / "s.json", "qa") == rows


def test_squad_bad_answer_start_names_the_question(tmp_path):
    with pytest.raises(DataError) as info:
        read_squad(_squad(tmp_path / "s.json", answer_start=3))
    assert "data[0].paragraphs[0].qas[0]" in str(info.value)
    assert "answer_start" in str(info.value)


def test_qa_jsonl_rows(tmp_path):
    row = {"id": "a", "question": "q?", "context": "abc def", "answers": {"text": ["def"], "answer_start": [4]}}
    path = _jsonl(tmp_path / "qa.jsonl", [row])
    assert load_rows(path, "qa") == [row]


def test_label_names():
    rows = [{"label": x} for x in ["10", "2", "2", "1"]]
    assert label_names(rows) == ["1", "2", "10"]
    assert label_names([{"label": "b"}, {"label": "a"}]) == ["a", "b"]
    assert label_names(rows, given=["10", "2", "1", "0"]) == ["10", "2", "1", "0"]
    with pytest.raises(DataError, match="'10'"):
        label_names(rows, given=["1", "2"])
    with pytest.raises(DataError, match="at least 2"):
        label_names([{"label": "a"}])


def test_eval_labels_must_be_known():
    check_labels_subset(["a"], ["a", "b"], "dev")
    with pytest.raises(DataError, match="dev has label"):
        check_labels_subset(["a", "zzz"], ["a", "b"], "dev")


def test_rows_from_dataset_maps_class_labels():
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
        }
    )
    table = datasets.Dataset.from_dict(
        {"premise": ["a", "b", "c"], "hypothesis": ["x", "y", "z"], "label": [0, 2, -1]}, features=features
    )
    columns = task_data.KNOWN_DATASETS["xnli"]
    rows = rows_from_dataset(table, columns, "dataset xnli")
    assert rows == [
        {"text": "a", "text_pair": "x", "label": "entailment"},
        {"text": "b", "text_pair": "y", "label": "contradiction"},
    ]
    with pytest.raises(DataError, match="no column 'sentence'"):
        rows_from_dataset(table, DatasetColumns("classification", text="sentence"), "dataset d")


def test_named_source_dispatch(monkeypatch):
    bible = pytest.importorskip("embswap.data.bible")
    seen = []

    def fake(spec):
        seen.append(spec)
        return [{"text": "In the beginning", "label": "law", "id": "1.1.1"}, {"text": "x", "label": "history"}]

    monkeypatch.setattr(bible, "resolve_source", fake)
    rows = load_rows("bible-genre:en:train", "classification")
    assert seen == ["bible-genre:en:train"]
    assert [r["label"] for r in rows] == ["law", "history"]


def test_unknown_task_type():
    with pytest.raises(DataError, match="task type"):
        load_rows("x.jsonl", "sentence-embedding")
