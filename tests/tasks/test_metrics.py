"""Exact values of the task metrics (percent), including the official SQuAD normalisation."""

import pytest

from embswap.errors import DataError
from embswap.tasks.metrics import (
    accuracy,
    classification_scores,
    macro_f1,
    normalize_answer,
    squad_scores,
    token_f1_score,
)


def test_accuracy_exact():
    assert accuracy(["a", "b", "a", "c"], ["a", "b", "b", "c"]) == 75.0
    assert accuracy([], []) == 0.0


def test_macro_f1_exact():
    # a: 2TP/(pred+act) = 2/3, b: 2/3, c: 1 -> mean 7/9
    assert macro_f1(["a", "a", "b", "c"], ["a", "b", "b", "c"]) == pytest.approx(700 / 9, abs=1e-12)
    # a class that is never predicted scores 0: (2/3 + 0) / 2
    assert macro_f1(["a", "a"], ["a", "b"]) == pytest.approx(100 / 3, abs=1e-12)
    # labels given explicitly: a label absent from both sides still counts (as 0)
    assert macro_f1(["a"], ["a"], labels=["a", "b"]) == 50.0


def test_macro_f1_matches_sklearn():
    sklearn = pytest.importorskip("sklearn.metrics")
    preds = list("aabbcacbba")
    golds = list("abbbcccaba")
    expected = 100 * sklearn.f1_score(golds, preds, average="macro")
    assert macro_f1(preds, golds) == pytest.approx(expected, abs=1e-12)


def test_length_mismatch_is_an_error():
    with pytest.raises(DataError, match="2 predictions for 1 gold"):
        accuracy(["a", "b"], ["a"])


def test_classification_scores_keys():
    assert classification_scores(["x", "y"], ["x", "x"]) == {
        "accuracy": 50.0,
        "macro_f1": pytest.approx(100 / 3),
        "n": 2,
    }


def test_squad_normalisation():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("an Apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # only whole-word articles go
    assert normalize_answer("  Denver\tBroncos. ") == "denver broncos"


def test_token_f1_exact():
    # prediction [cat, sat], gold [cat, sat, on, mat]: precision 1, recall 1/2
    assert token_f1_score("the cat sat", "a cat sat on the mat") == pytest.approx(2 / 3)
    assert token_f1_score("dog", "cat") == 0.0
    assert token_f1_score("", "") == 1.0
    assert token_f1_score("cat", "") == 0.0


def test_squad_scores_best_over_gold_answers():
    predictions = {"q1": "the Broncos", "q2": "a red cat", "q3": "nothing"}
    golds = {"q1": ["Denver Broncos", "Broncos"], "q2": ["cat"], "q3": ["something else"]}
    scores = squad_scores(predictions, golds)
    # q1: exact via "Broncos"; q2: F1 = 2 * (1/2 * 1) / (1/2 + 1) = 2/3; q3: 0
    assert scores["n"] == 3
    assert scores["exact"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)


def test_squad_missing_prediction_scores_zero():
    assert squad_scores({}, {"q": ["x"]}) == {"exact": 0.0, "f1": 0.0, "n": 1}
