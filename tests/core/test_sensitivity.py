"""Block sensitivity equals brute force from the full autograd gradient; accumulators divide by the
number of micro-batches actually seen."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seta.core.blocks import BlockGrid
from seta.core.sensitivity import (
    FisherAccumulator,
    SensitivityAccumulator,
    block_fisher_scores,
    blockwise_mean_square,
)

SPEC = settings(max_examples=200, deadline=None)


def brute_force_scores(grad: torch.Tensor, grid: BlockGrid) -> torch.Tensor:
    """Slow reference: mean of grad^2 over each block's element slices."""
    return torch.tensor(
        [grad[grid.slices(i)].double().square().mean().item() for i in range(grid.n_blocks)],
        dtype=torch.float64,
    )


def micro_batch(lin: torch.nn.Linear, lead: tuple, gen: torch.Generator):
    """One micro-batch through a real nn.Linear: returns (x, dy, W.grad) with loss = <y, c> + ||y||^2 / 2."""
    x = torch.randn(*lead, lin.in_features, generator=gen, dtype=torch.float64)  # (..., d_in)
    c = torch.randn(*lead, lin.out_features, generator=gen, dtype=torch.float64)  # (..., d_out)
    lin.zero_grad()
    y = lin(x)
    y.retain_grad()
    ((y * c).sum() + 0.5 * y.square().sum()).backward()
    return x, y.grad.detach().clone(), lin.weight.grad.detach().clone()


shapes = st.tuples(
    st.integers(1, 11),  # out_features
    st.integers(1, 11),  # in_features
    st.integers(1, 5),  # block_size (ragged edges whenever it does not divide a side)
    st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple),  # leading token dims
    st.integers(0, 2**31 - 1),  # seed
)


@SPEC
@given(shapes)
def test_block_scores_equal_brute_force_from_autograd(shape):
    out_f, in_f, b, lead, seed = shape
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    lin = torch.nn.Linear(in_f, out_f, bias=True).double()
    grid = BlockGrid(out_f, in_f, b)
    x, dy, w_grad = micro_batch(lin, lead, gen)
    expected = brute_force_scores(w_grad, grid)
    torch.testing.assert_close(block_fisher_scores(x, dy, grid), expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(blockwise_mean_square(w_grad, grid), expected, rtol=1e-9, atol=1e-12)


@SPEC
@given(shapes, st.integers(1, 4), st.integers(0, 2))
def test_accumulator_is_mean_over_micro_batches_seen(shape, n_batches, n_empty):
    out_f, in_f, b, lead, seed = shape
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    lins = {"a": torch.nn.Linear(in_f, out_f).double(), "b": torch.nn.Linear(out_f, in_f).double()}
    grids = {name: BlockGrid(l.out_features, l.in_features, b) for name, l in lins.items()}
    acc = SensitivityAccumulator(grids)
    per_batch = {name: [] for name in lins}
    for _ in range(n_batches):
        for name, lin in lins.items():
            x, dy, w_grad = micro_batch(lin, lead, gen)
            acc.add(name, x, dy)
            per_batch[name].append(brute_force_scores(w_grad, grids[name]))
        assert acc.end_micro_batch()
    for _ in range(n_empty):  # closing an empty micro-batch does not count
        assert not acc.end_micro_batch()
    assert acc.n_micro_batches == n_batches
    scores = acc.scores()
    for name in lins:
        expected = torch.stack(per_batch[name]).sum(0) / n_batches
        torch.testing.assert_close(scores[name], expected, rtol=1e-9, atol=1e-12)


def test_float32_inputs_match_float64_reference():
    grid = BlockGrid(37, 29, 8)
    gen = torch.Generator().manual_seed(0)
    x, dy = torch.randn(3, 5, 29, generator=gen), torch.randn(3, 5, 37, generator=gen)
    g = dy.double().reshape(-1, 37).T @ x.double().reshape(-1, 29)  # (37, 29)
    torch.testing.assert_close(block_fisher_scores(x, dy, grid), brute_force_scores(g, grid), rtol=1e-4, atol=0)


def test_layer_missing_from_a_micro_batch_contributes_zero():
    grids = {"a": BlockGrid(4, 4, 2), "b": BlockGrid(4, 4, 2)}
    acc = SensitivityAccumulator(grids)
    x, dy = torch.ones(1, 4), torch.ones(1, 4)
    acc.add("a", x, dy)
    acc.end_micro_batch()
    acc.add("a", x, dy)
    acc.add("b", x, dy)
    acc.end_micro_batch()
    s = acc.scores()
    torch.testing.assert_close(s["a"], torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(s["b"], torch.full((4,), 0.5, dtype=torch.float64))


def test_accumulator_errors_are_actionable():
    acc = SensitivityAccumulator({"a": BlockGrid(4, 3, 2)})
    with pytest.raises(ValueError, match="no micro-batch"):
        acc.scores()
    with pytest.raises(ValueError, match="unknown layer"):
        acc.add("z", torch.ones(1, 3), torch.ones(1, 4))
    with pytest.raises(ValueError, match="expected for this grid"):
        acc.add("a", torch.ones(1, 4), torch.ones(1, 3))
    acc.add("a", torch.ones(1, 3), torch.ones(1, 4))
    with pytest.raises(ValueError, match="already added"):
        acc.add("a", torch.ones(1, 3), torch.ones(1, 4))
    with pytest.raises(ValueError, match="still open"):
        acc.scores()


@SPEC
@given(st.integers(1, 5), st.integers(1, 4), st.integers(0, 3), st.integers(0, 2**31 - 1))
def test_fisher_accumulator_is_mean_squared_gradient(n_batches, k, n_empty, seed):
    gen = torch.Generator().manual_seed(seed)
    acc = FisherAccumulator()
    grads = [torch.randn(k, 3, 3, generator=gen) for _ in range(n_batches)]
    for g in grads:
        acc.add("blocks", g.square())
        acc.end_micro_batch()
    for _ in range(n_empty):
        acc.end_micro_batch()
    assert acc.n_micro_batches == n_batches
    expected = torch.stack([g.square() for g in grads]).mean(0)
    torch.testing.assert_close(acc.mean()["blocks"], expected)
