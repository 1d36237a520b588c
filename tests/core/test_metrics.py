"""Continual metrics on hand-computed matrices, plus properties (0-based R[i][j] = score on task j
after training through task i)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seta.core.metrics import (backward_transfer, forward_transfer, learning_accuracy, overall_performance,
                               per_task_rows, plasticity_gain, summary)

SPEC = settings(max_examples=200, deadline=None)
nan = float("nan")

# 3 tasks; NaN where no metric reads (R[1][0], R[0][2]).
R3 = [
    [80.0, 20.0, nan],
    [nan, 85.0, 30.0],
    [60.0, 75.0, 90.0],
]
B3 = [15.0, 18.0, 25.0]
# By hand: OP  = (60 + 75 + 90) / 3                 = 75.0
#          BWT = ((60 - 80) + (75 - 85)) / 2         = -15.0
#          FWT = ((20 - 18) + (30 - 25)) / 2         = 3.5
#          LA  = (80 + 85 + 90) / 3                  = 85.0

R2 = np.array([[50.0, 40.0], [55.0, 70.0]])
B2 = np.array([10.0, 30.0])
# By hand: OP = (55 + 70) / 2 = 62.5; BWT = (55 - 50) / 1 = 5.0; FWT = (40 - 30) / 1 = 10.0


def test_hand_computed_three_tasks():
    assert overall_performance(R3) == pytest.approx(75.0)
    assert backward_transfer(R3) == pytest.approx(-15.0)
    assert forward_transfer(R3, B3) == pytest.approx(3.5)
    assert learning_accuracy(R3) == pytest.approx(85.0)
    assert summary(R3, B3) == pytest.approx({"op": 75.0, "bwt": -15.0, "la": 85.0, "fwt": 3.5})


def test_learning_accuracy_reads_the_diagonal_only():
    R = np.full((3, 3), np.nan)
    np.fill_diagonal(R, [10.0, 20.0, 60.0])
    with pytest.raises(ValueError):
        overall_performance(R)  # the final row is incomplete
    assert learning_accuracy(R) == pytest.approx(30.0)
    R[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"R\[1\]\[1\]"):
        learning_accuracy(R)


def test_plasticity_gain_by_hand():
    # ((80 - 15) + (85 - 18) + (90 - 25)) / 3 = (65 + 67 + 65) / 3 = 65.666...
    assert plasticity_gain(R3, B3) == pytest.approx(197 / 3)
    # JSON's null for a task never trained on its own (MTL's diagonal) is a missing entry, not a number
    with pytest.raises(ValueError, match=r"R\[1\]\[1\]"):
        plasticity_gain([[80.0, None], [None, None]], [10.0, 20.0])
    with pytest.raises(ValueError, match="base_scores"):
        plasticity_gain(R3, [15.0, nan, 25.0])
    with pytest.raises(ValueError, match="one score per task"):
        plasticity_gain(R3, [15.0, 18.0])


def test_hand_computed_two_tasks_numpy_input():
    assert overall_performance(R2) == pytest.approx(62.5)
    assert backward_transfer(R2) == pytest.approx(5.0)
    assert forward_transfer(R2, B2) == pytest.approx(10.0)


def test_single_task():
    assert overall_performance([[42.0]]) == 42.0
    assert backward_transfer([[42.0]]) == 0.0
    assert math.isnan(forward_transfer([[42.0]], [10.0]))


def test_per_task_rows_by_hand():
    rows = per_task_rows(R3, B3)
    assert [r["task"] for r in rows] == [0, 1, 2]
    assert [r["final"] for r in rows] == [60.0, 75.0, 90.0]
    assert [r["just_trained"] for r in rows] == [80.0, 85.0, 90.0]
    assert rows[0]["bwt"] == -20.0 and rows[1]["bwt"] == -10.0 and math.isnan(rows[2]["bwt"])
    assert math.isnan(rows[0]["fwt"]) and rows[1]["fwt"] == 2.0 and rows[2]["fwt"] == 5.0
    assert math.isnan(per_task_rows(R3)[1]["fwt"])


def test_nan_in_a_read_entry_and_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"R\[1\]\[1\]"):
        backward_transfer([[1.0, nan, nan], [nan, nan, nan], [1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="square"):
        overall_performance([[1.0, 2.0]])
    with pytest.raises(ValueError, match="one score per task"):
        forward_transfer(R2, [1.0])


square = st.integers(1, 6).flatmap(
    lambda n: st.lists(st.lists(st.floats(0, 100), min_size=n, max_size=n), min_size=n, max_size=n)
)


@SPEC
@given(st.integers(1, 8), st.floats(0, 100))
def test_constant_matrix_has_zero_bwt(n, c):
    R = np.full((n, n), c)
    assert backward_transfer(R) == pytest.approx(0.0, abs=1e-9)
    assert overall_performance(R) == pytest.approx(c)


@SPEC
@given(st.integers(2, 8), st.floats(1, 100), st.floats(0.01, 5))
def test_strictly_falling_scores_give_negative_bwt(n, start, drop):
    # every task's score falls strictly with each later task
    R = np.array([[start - drop * max(i - j, 0) for j in range(n)] for i in range(n)])
    assert backward_transfer(R) < 0
    assert backward_transfer(R) == pytest.approx(-drop * sum(n - 1 - j for j in range(n - 1)) / (n - 1))


@SPEC
@given(square, st.lists(st.floats(0, 100), min_size=6, max_size=6))
def test_inputs_never_mutated_and_match_1_based_spec(R, base):
    n = len(R)
    base = base[:n]
    R_list = [row[:] for row in R]
    R_arr = np.array(R)
    R_arr_copy = R_arr.copy()
    for inp in (R_list, R_arr):
        summary(inp, base)
        per_task_rows(inp, base)
    assert R_list == R and np.array_equal(R_arr, R_arr_copy)
    # spec (1-based) written out directly
    r = lambda i, j: R[i - 1][j - 1]  # noqa: E731
    assert overall_performance(R) == pytest.approx(sum(r(n, j) for j in range(1, n + 1)) / n)
    if n > 1:
        assert backward_transfer(R) == pytest.approx(sum(r(n, j) - r(j, j) for j in range(1, n)) / (n - 1))
        fwt = sum(r(j - 1, j) - base[j - 1] for j in range(2, n + 1)) / (n - 1)
        assert forward_transfer(R, base) == pytest.approx(fwt)
