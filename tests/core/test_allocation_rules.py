"""Comparable scores across matrices (docs/method.md §2, revised): raw, matrix-mean, matrix-budget."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seta.core.allocation import (ALLOCATION_RULES, allocate_blocks, matrix_budgets, matrix_mean_normalise,
                                  select_blocks)

SPEC = settings(max_examples=200, deadline=None)


@st.composite
def problems(draw):
    sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=6))
    n = sum(sizes)
    # per-matrix scales 10-100x apart (the case the rule is for) and few levels (frequent ties)
    scales = draw(st.lists(st.sampled_from([0.01, 0.1, 1.0, 8.0, 64.0]), min_size=len(sizes), max_size=len(sizes)))
    levels = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.5, 3.0]), min_size=n, max_size=n))
    scores = torch.tensor(levels, dtype=torch.float64) * torch.repeat_interleave(
        torch.tensor(scales, dtype=torch.float64), torch.tensor(sizes))
    owned = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    k = draw(st.integers(1, n))
    beta = draw(st.sampled_from([0.0, 0.1, 1.0]))
    return scores, sizes, owned, k, beta


@SPEC
@given(problems(), st.sampled_from(ALLOCATION_RULES))
def test_budget_is_exactly_k_and_selection_is_deterministic(problem, rule):
    scores, sizes, owned, k, beta = problem
    s = allocate_blocks(scores, k, sizes, rule, owned, beta)
    assert s.numel() == k and s.unique().numel() == k
    assert torch.equal(s, s.sort().values) and 0 <= int(s.min()) and int(s.max()) < scores.numel()
    assert torch.equal(s, allocate_blocks(scores.clone(), k, list(sizes), rule, owned.clone(), beta))


@SPEC
@given(problems(), st.data())
def test_matrix_mean_is_invariant_to_rescaling_one_matrix(problem, data):
    scores, sizes, owned, k, beta = problem
    m = data.draw(st.integers(0, len(sizes) - 1))
    factor = 2.0 ** data.draw(st.integers(-20, 20))  # powers of two: the rescaling itself is exact
    start = sum(sizes[:m])
    scaled = scores.clone()
    scaled[start : start + sizes[m]] *= factor
    a = allocate_blocks(scores, k, sizes, "matrix-mean", owned, beta)
    assert torch.equal(a, allocate_blocks(scaled, k, sizes, "matrix-mean", owned, beta))
    torch.testing.assert_close(matrix_mean_normalise(scaled, sizes), matrix_mean_normalise(scores, sizes))


@SPEC
@given(problems())
def test_matrix_budget_gives_each_matrix_its_proportional_share(problem):
    scores, sizes, owned, k, beta = problem
    ks = matrix_budgets(k, sizes)
    n = sum(sizes)
    assert sum(ks) == k and all(0 <= a <= b for a, b in zip(ks, sizes))
    assert all(abs(a - k * b / n) < 1 + 1e-9 for a, b in zip(ks, sizes))  # within one of the exact quota
    s = allocate_blocks(scores, k, sizes, "matrix-budget", owned, beta)
    bounds = torch.cumsum(torch.tensor([0] + sizes), 0)
    per = [int(((s >= lo) & (s < hi)).sum()) for lo, hi in zip(bounds[:-1], bounds[1:])]
    assert per == ks
    # inside each matrix: the top-k_m of score · (1 + β·owned)
    for m, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        want = select_blocks(scores[lo:hi], ks[m], owned[lo:hi], beta) + lo
        assert s[(s >= lo) & (s < hi)].tolist() == want.tolist()


@SPEC
@given(problems())
def test_raw_is_the_plain_model_wide_top_k(problem):
    scores, sizes, owned, k, beta = problem
    assert torch.equal(allocate_blocks(scores, k, sizes, "raw", owned, beta), select_blocks(scores, k, owned, beta))


def test_matrix_mean_by_hand():
    scores = torch.tensor([1.0, 3.0, 100.0, 300.0, 0.0, 0.0], dtype=torch.float64)
    out = matrix_mean_normalise(scores, [2, 2, 2])
    assert out.tolist() == [0.5, 1.5, 0.5, 1.5, 0.0, 0.0]  # an all-zero matrix stays zero
    # raw puts the whole budget into the loud matrix; matrix-mean takes the top block of each
    assert allocate_blocks(scores, 2, [2, 2, 2], "raw").tolist() == [2, 3]
    assert allocate_blocks(scores, 2, [2, 2, 2], "matrix-mean").tolist() == [1, 3]
    assert matrix_budgets(5, [2, 2, 6]) == [1, 1, 3]
    assert matrix_budgets(3, [1, 1, 1]) == [1, 1, 1]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="allocation rule"):
        allocate_blocks(torch.ones(4), 2, [4], "global")
    with pytest.raises(ValueError, match="sum to the 4 scores"):
        allocate_blocks(torch.ones(4), 2, [3], "matrix-mean")
    with pytest.raises(ValueError, match="NaN"):
        allocate_blocks(torch.tensor([1.0, math.nan]), 1, [2], "matrix-mean")
