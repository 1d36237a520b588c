"""R assembly, continual metrics and seed aggregation against hand-computed matrices."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seta.eval.continual import (
    aggregate_seeds,
    confusion_matrix,
    continual_metrics,
    mean_std,
    r_matrix,
    r_matrix_from_records,
    routing_accuracy,
)

NAN = float("nan")
TASKS = ["a", "b", "c"]
R1 = [[80, 10, NAN], [70, 90, 20], [60, 85, 95]]
R2 = [[82, 12, NAN], [72, 88, 22], [64, 87, 93]]
BASE = [5, 8, 10]


def test_r_matrix_from_dict_rows_and_lists():
    R = r_matrix([{"a": 80}, {"a": 70, "b": 90}, {"c": 95, "a": 60, "b": 85}], TASKS)
    expect = np.array([[80, NAN, NAN], [70, 90, NAN], [60, 85, 95]])
    np.testing.assert_array_equal(R, expect)
    np.testing.assert_array_equal(r_matrix([[80], [70, 90], [60, 85, 95]], TASKS), expect)


def test_r_matrix_from_records():
    recs = [{"after": "a", "task": "a", "score": 80}, {"after": 1, "task": "b", "score": 90},
            {"after": 2, "task": "c", "score": 95}]
    R = r_matrix_from_records(recs, TASKS)
    assert np.diag(R).tolist() == [80, 90, 95] and np.isnan(R[0, 1])


def test_r_matrix_errors():
    with pytest.raises(ValueError, match="one row per trained task"):
        r_matrix([{"a": 1}], TASKS)
    with pytest.raises(ValueError, match="unknown task"):
        r_matrix([{"z": 1}, {}, {}], TASKS)
    with pytest.raises(ValueError, match="unique"):
        r_matrix([{}, {}], ["a", "a"])


def test_metrics_hand_computed():
    m = continual_metrics(R1, BASE)
    assert m.OP == pytest.approx((60 + 85 + 95) / 3)
    assert m.BWT == pytest.approx(((60 - 80) + (85 - 90)) / 2)
    assert m.FWT == pytest.approx(((10 - 8) + (20 - 10)) / 2)


def test_fwt_nan_without_base_or_unseen_evaluations():
    assert math.isnan(continual_metrics(R1).FWT)
    R = np.array(R1, dtype=float)
    R[0, 1] = NAN  # task b not evaluated before training it
    m = continual_metrics(R, BASE)
    assert math.isnan(m.FWT) and m.OP == pytest.approx(80.0)


def test_nan_in_a_needed_entry_is_an_error():
    R = np.array(R1, dtype=float)
    R[2, 0] = NAN
    with pytest.raises(ValueError, match="NaN"):
        continual_metrics(R)


def test_aggregate_two_seeds_hand_computed():
    before = np.array(R1, dtype=float).copy()
    agg = aggregate_seeds([R1, R2], BASE)
    assert agg.OP == pytest.approx((80 + 244 / 3) / 2)
    assert agg.OP_std == pytest.approx(abs(80 - 244 / 3) / math.sqrt(2))
    assert agg.BWT == pytest.approx(-11.0) and agg.BWT_std == pytest.approx(3 / math.sqrt(2))
    assert agg.FWT == pytest.approx(7.0) and agg.FWT_std == pytest.approx(2 / math.sqrt(2))
    np.testing.assert_allclose(agg.final_mean, [62, 86, 94])
    np.testing.assert_allclose(agg.final_std, np.array([4, 2, 2]) / math.sqrt(2))
    assert math.isnan(agg.R_mean[0, 2]) and agg.R_mean[1, 0] == 71
    np.testing.assert_array_equal(np.array(R1, dtype=float), before)  # input untouched
    per_seed_base = aggregate_seeds([R1, R2], [BASE, [0, 0, 0]])
    assert per_seed_base.per_seed[1].FWT == pytest.approx((12 + 22) / 2)


def test_single_seed_std_is_nan():
    agg = aggregate_seeds([R1])
    assert agg.OP == pytest.approx(80.0) and math.isnan(agg.OP_std) and math.isnan(agg.R_std[2, 2])
    assert mean_std([]) == (pytest.approx(NAN, nan_ok=True), pytest.approx(NAN, nan_ok=True))
    with pytest.raises(ValueError, match="per seed"):
        aggregate_seeds([R1, R2], [[1, 2, 3]] * 3)


def test_routing_confusion_and_accuracy():
    C = confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 3)
    assert C.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert routing_accuracy([0, 0, 1, 2, 2], [0, 1, 1, 2, 0]) == pytest.approx(60.0)
    with pytest.raises(ValueError, match="out of range"):
        confusion_matrix([3], [0], 3)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5), st.integers(1, 4), st.randoms(use_true_random=False))
def test_aggregate_equals_mean_of_per_seed_metrics(n, S, rnd):
    Rs = [[[rnd.uniform(0, 100) for _ in range(n)] for _ in range(n)] for _ in range(S)]
    agg = aggregate_seeds(Rs)
    ops = [continual_metrics(R).OP for R in Rs]
    assert agg.OP == pytest.approx(sum(ops) / S)
    # OP of the mean R equals the mean OP (OP and BWT are linear in R)
    assert continual_metrics(agg.R_mean).OP == pytest.approx(agg.OP)
    assert continual_metrics(agg.R_mean).BWT == pytest.approx(agg.BWT, abs=1e-9)
