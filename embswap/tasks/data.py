"""Task rows from files, bundled offline sources or ``datasets`` names, validated before training.

Row shapes (plain dicts, extra keys such as ``id`` are kept and ignored):

- classification: ``{"text": str, "label": str}``
- pair-classification: ``{"text": str, "text_pair": str, "label": str}``
- qa: ``{"id": str, "question": str, "context": str, "answers": {"text": [str], "answer_start": [int]}}``

Labels are strings here whatever the source wrote (``1`` and ``"1"`` are one label), so a task's
label names are a plain list of strings. Every malformed row raises a one-line
:class:`~embswap.errors.DataError` naming the file, the line (or JSON path) and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data.text import nonblank_lines
from ..errors import DataError

CLASSIFICATION_TASKS = ("classification", "pair-classification")
SUPERVISED_TASKS = ("classification", "pair-classification", "qa")


@dataclass(frozen=True)
class DatasetColumns:
    """Where a ``datasets`` table keeps the fields a task needs."""

    task: str
    text: str = "text"
    pair: str | None = None
    label: str = "label"
    # QA columns (SQuAD layout in the datasets library).
    question: str = "question"
    context: str = "context"
    answers: str = "answers"
    id: str = "id"


# Known public datasets: the task they are and their column names (config = language, e.g. "de").
KNOWN_DATASETS: dict[str, DatasetColumns] = {
    "xnli": DatasetColumns("pair-classification", text="premise", pair="hypothesis"),
    "paws-x": DatasetColumns("pair-classification", text="sentence1", pair="sentence2"),
    "google-research-datasets/paws-x": DatasetColumns("pair-classification", text="sentence1", pair="sentence2"),
    "facebook/xnli": DatasetColumns("pair-classification", text="premise", pair="hypothesis"),
    "xquad": DatasetColumns("qa"),
    "google/xquad": DatasetColumns("qa"),
    "squad": DatasetColumns("qa"),
    "rajpurkar/squad": DatasetColumns("qa"),
}


# --------------------------------------------------------------------------- validation


def _label(value, where: str) -> str:
    # bool is an int subclass; true/false labels are almost always a mistake in the file.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: field 'label' must be a string or an integer, got {json.dumps(value)}")
    label = str(value)
    if not label.strip():
        raise DataError(f"{where}: field 'label' is empty")
    return label


def _text(row: dict, field: str, where: str) -> str:
    if field not in row:
        raise DataError(f"{where}: missing field {field!r} (found: {', '.join(sorted(row)) or 'nothing'})")
    value = row[field]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field {field!r} is empty")
    return value


def validate_row(row, task: str, where: str) -> dict:
    """A clean copy of one row for ``task``, or a DataError naming ``where`` and the field."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if task in CLASSIFICATION_TASKS:
        out = dict(row)
        out["text"] = _text(row, "text", where)
        if task == "pair-classification":
            out["text_pair"] = _text(row, "text_pair", where)
        if "label" not in row:
            raise DataError(f"{where}: missing field 'label'")
        out["label"] = _label(row["label"], where)
        return out
    if task == "qa":
        return _validate_qa(row, where)
    raise DataError(f"task type {task!r} has no labelled rows; expected one of: {', '.join(SUPERVISED_TASKS)}")


def validate_rows(rows: Iterable, task: str, what: str = "row") -> list[dict]:
    """Validated copies of rows handed in from Python (errors name the row number from 1)."""
    return [validate_row(row, task, f"{what} {i}") for i, row in enumerate(rows, start=1)]


def _validate_qa(row: dict, where: str) -> dict:
    question = _text(row, "question", where)
    context = _text(row, "context", where)
    ident = row.get("id", where)
    answers = row.get("answers")
    if not isinstance(answers, dict) or not isinstance(answers.get("text"), list):
        raise DataError(f'{where}: field \'answers\' must be {{"text": [...], "answer_start": [...]}}')
    texts, starts = answers["text"], answers.get("answer_start")
    if not isinstance(starts, list) or len(starts) != len(texts):
        raise DataError(f"{where}: field 'answers.answer_start' must list one start per answer text")
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or isinstance(start, bool) or not isinstance(start, int):
            raise DataError(f"{where}: field 'answers' must hold string texts and integer starts")
        if context[start : start + len(text)] != text:
            raise DataError(
                f"{where}: field 'answers.answer_start' {start} does not point at {text!r} in the context "
                f"(found {context[start : start + len(text)]!r})"
            )
    return {
        "id": str(ident),
        "question": question,
        "context": context,
        "answers": {"text": texts, "answer_start": starts},
    }


# --------------------------------------------------------------------------- files


def read_jsonl(path: str | os.PathLike, task: str) -> list[dict]:
    """JSONL task rows (one JSON object a line; blank lines skipped), validated for ``task``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; pass a JSONL task file, a named source or --dataset")
    rows = []
    for number, line in nonblank_lines(path):
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
        rows.append(validate_row(row, task, where))
    if not rows:
        raise DataError(f"{path} holds no rows; expected one JSON object a line")
    return rows


def read_squad(path: str | os.PathLike) -> list[dict]:
    """SQuAD-format JSON (``{"data": [{"paragraphs": [{"context", "qas": [...]}]}]}``) as QA rows."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; pass a SQuAD-format JSON file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(f"{path}: expected a SQuAD-format object with a 'data' list")
    rows = []
    for i, article in enumerate(document["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(f"{path}: data[{i}]: missing field 'paragraphs'")
        for j, paragraph in enumerate(paragraphs):
            where = f"{path}: data[{i}].paragraphs[{j}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise DataError(f"{where}: missing field 'qas'")
            for k, qa in enumerate(paragraph["qas"]):
                here = f"{where}.qas[{k}]"
                if not isinstance(qa, dict):
                    raise DataError(f"{here}: expected a JSON object")
                answers = qa.get("answers", [])
                if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
                    raise DataError(f'{here}: field \'answers\' must be a list of {{"text", "answer_start"}}')
                row = {
                    "id": qa.get("id", here),
                    "question": qa.get("question"),
                    "context": paragraph.get("context"),
                    "answers": {
                        "text": [a.get("text") for a in answers],
                        "answer_start": [a.get("answer_start") for a in answers],
                    },
                }
                rows.append(_validate_qa(row, here))
    if not rows:
        raise DataError(f"{path} holds no questions")
    return rows


# --------------------------------------------------------------------------- datasets library


def rows_from_dataset(table, columns: DatasetColumns, where: str) -> list[dict]:
    """Rows from a ``datasets.Dataset``; integer ClassLabel values become their names."""
    names = list(getattr(table, "column_names", []))
    wanted = (
        [columns.question, columns.context, columns.answers]
        if columns.task == "qa"
        else [columns.text, columns.label] + ([columns.pair] if columns.pair else [])
    )
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(
            f"{where} has no column {missing[0]!r} (columns: {', '.join(names)}); "
            "map the columns with --text-column / --pair-column / --label-column"
        )
    if columns.task == "pair-classification" and not columns.pair:
        raise DataError(f"{where}: a pair-classification task needs --pair-column")
    feature = table.features.get(columns.label) if columns.task != "qa" else None
    to_name = getattr(feature, "int2str", None) if feature is not None and hasattr(feature, "names") else None
    rows = []
    for i, record in enumerate(table):
        here = f"{where} row {i}"
        if columns.task == "qa":
            answers = record[columns.answers]
            row = {
                "id": record.get(columns.id, str(i)),
                "question": record[columns.question],
                "context": record[columns.context],
                "answers": {"text": list(answers["text"]), "answer_start": list(answers["answer_start"])},
            }
            rows.append(_validate_qa(row, here))
            continue
        label = record[columns.label]
        if isinstance(label, int) and label < 0:
            continue  # datasets' convention for unlabelled rows (e.g. SNLI's -1)
        row = {"text": record[columns.text], "label": to_name(label) if to_name else label}
        if columns.pair:
            row["text_pair"] = record[columns.pair]
        rows.append(validate_row(row, columns.task, here))
    return rows


def load_dataset_rows(
    name: str,
    task: str,
    *,
    config: str | None = None,
    split: str = "train",
    text_column: str | None = None,
    pair_column: str | None = None,
    label_column: str | None = None,
    data_files=None,
) -> list[dict]:
    """Task rows from the ``datasets`` library (online users; needs ``pip install embswap[data]``)."""
    try:
        import datasets
    except ModuleNotFoundError:
        raise DataError("--dataset needs the datasets library: pip install 'embswap[data]'") from None
    known = KNOWN_DATASETS.get(name, DatasetColumns(task))
    if known.task != task:
        raise DataError(f"dataset {name!r} is a {known.task} task, not {task}; pass --task {known.task}")
    columns = DatasetColumns(
        task,
        text=text_column or known.text,
        pair=pair_column or known.pair,
        label=label_column or known.label,
    )
    where = f"dataset {name}" + (f"/{config}" if config else "") + f" split {split}"
    try:
        table = datasets.load_dataset(name, config, split=split, data_files=data_files)
    except Exception as err:  # the datasets library raises many unrelated types for a bad name
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"cannot load {where} ({first}); check the name, --config and --split") from None
    return rows_from_dataset(table, columns, where)


# --------------------------------------------------------------------------- one entry point


def _named_source(spec: str) -> bool:
    try:
        from ..data import bible
    except ImportError:
        return False
    return bible.is_named_source(spec)


def load_rows(source: str | os.PathLike, task: str, **dataset_options) -> list[dict]:
    """Rows for ``task`` from a file (.jsonl, SQuAD .json), a named offline source, or a dataset.

    ``source`` is a path, a bundled source such as ``bible-genre:en:train``, or, when
    ``dataset_options`` holds ``dataset=NAME``, ignored in favour of that dataset.
    """
    if task not in SUPERVISED_TASKS:
        raise DataError(f"task type {task!r} has no labelled rows; expected one of: {', '.join(SUPERVISED_TASKS)}")
    name = dataset_options.pop("dataset", None)
    if name:
        return load_dataset_rows(name, task, **dataset_options)
    spec = os.fspath(source)
    if _named_source(spec):
        from ..data import bible

        where = f"source {spec}"
        return [validate_row(row, task, f"{where} row {i}") for i, row in enumerate(bible.resolve_source(spec))]
    path = Path(spec)
    if task == "qa" and path.suffix == ".json":
        return read_squad(path)
    return read_jsonl(path, task)


def describe_source(source, **dataset_options) -> str:
    """A short provenance string for where rows came from."""
    name = dataset_options.get("dataset")
    if name:
        parts = [name] + [f"{k}={v}" for k, v in dataset_options.items() if k != "dataset" and v is not None]
        return "dataset " + " ".join(parts)
    return os.fspath(source)


# --------------------------------------------------------------------------- labels


def _label_key(label: str):
    # Integer labels sort numerically ("2" before "10"); other labels alphabetically.
    return (0, int(label), "") if label.lstrip("-").isdigit() else (1, 0, label)


def label_names(rows: Iterable[dict], given: Sequence[str] | None = None) -> list[str]:
    """The task's label names: ``given`` (checked against the rows) or the sorted set in ``rows``."""
    found = {row["label"] for row in rows}
    if given is not None:
        names = [str(label) for label in given]
        if len(set(names)) != len(names):
            raise DataError(f"label names must be unique, got {names}")
        check_labels_subset(found, names, "the training data")
        return names
    if len(found) < 2:
        raise DataError(
            f"the training data has {len(found)} distinct label(s) ({', '.join(sorted(found))}); a classifier needs at least 2"
        )
    return sorted(found, key=_label_key)


def check_labels_subset(found: Iterable[str], names: Sequence[str], where: str) -> None:
    """Every label in ``found`` must be one of ``names``, else a DataError listing both."""
    unknown = sorted(set(found) - set(names), key=_label_key)
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        raise DataError(
            f"{where} has label(s) {shown} that the task does not know (its labels: {', '.join(names)}); "
            "train the task with those labels or fix the data"
        )
