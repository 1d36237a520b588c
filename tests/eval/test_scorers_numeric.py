"""The `numeric` metric: numbers compared as numbers."""

import pytest

from seta.eval.scorers import numeric, score


@pytest.mark.parametrize("pred, ref, expected", [
    ("12", "12", 100.0), ("12.0 apples", "12", 100.0), (" 1,200", "1200", 100.0), ("0.50", ".5", 100.0),
    ("3/4", "0.75", 100.0), ("-2", "-2.0", 100.0), ("13", "12", 0.0), ("twelve", "12", 0.0), ("", "12", 0.0),
    ("12", "1/0", 0.0), ("abc", "abc", 100.0), ("abd", "abc", 0.0),  # a reference that is no number: exact match
])
def test_numeric(pred, ref, expected):
    assert numeric(pred, ref) == expected


def test_numeric_through_score_takes_the_best_reference():
    assert score("numeric", ["7", "8.0"], [["6", "7"], "9"]) == 50.0
