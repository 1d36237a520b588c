"""Block geometry round-trips and the fast block product against the dense reference."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seta.core.blocks import (BlockGrid, BlockIndex, block_delta, block_delta_add_, block_delta_reference,
                              blocks_to_dense)

SPEC = settings(max_examples=200, deadline=None)

grids = st.builds(
    BlockGrid,
    out_features=st.integers(1, 40),
    in_features=st.integers(1, 40),
    block_size=st.integers(1, 12),
)


@SPEC
@given(grids)
def test_grid_tiles_every_element_exactly_once(grid):
    cover = torch.zeros(grid.out_features, grid.in_features, dtype=torch.long)
    for i in range(grid.n_blocks):
        rs, cs = grid.slices(i)
        cover[rs, cs] += 1
        assert grid.numel(i) == cover[rs, cs].numel() > 0
        assert grid.block_id(*grid.row_col(i)) == i
    assert bool((cover == 1).all())
    assert int(grid.numels().sum()) == grid.out_features * grid.in_features
    assert grid.numels().tolist() == [grid.numel(i) for i in range(grid.n_blocks)]


@SPEC
@given(grids, st.data())
def test_mask_matches_slices(grid, data):
    ids = data.draw(st.sets(st.integers(0, grid.n_blocks - 1), max_size=grid.n_blocks))
    expected = torch.zeros(grid.out_features, grid.in_features, dtype=torch.bool)
    for i in ids:
        expected[grid.slices(i)] = True
    assert torch.equal(grid.mask(sorted(ids)), expected)
    rows, cols = grid.rows_cols(sorted(ids))
    assert [grid.block_id(int(r), int(c)) for r, c in zip(rows, cols)] == sorted(ids)


@SPEC
@given(st.lists(grids, min_size=1, max_size=4), st.data())
def test_block_index_round_trip(grid_list, data):
    index = BlockIndex({f"layer{i}": g for i, g in enumerate(grid_list)})
    assert index.n_blocks == sum(g.n_blocks for g in grid_list)
    ids = data.draw(st.sets(st.integers(0, index.n_blocks - 1)))
    parts = index.split(sorted(ids))
    back = sorted(int(g) for name, local in parts.items() for g in index.to_global(name, local))
    assert back == sorted(ids)
    assert torch.equal(index.numels(), torch.cat([g.numels() for g in grid_list]))


def test_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="block_size"):
        BlockGrid(4, 4, 0)
    grid = BlockGrid(10, 10, 4)
    with pytest.raises(ValueError, match="outside"):
        grid.row_col(9)
    with pytest.raises(ValueError):
        grid.rows_cols([0, 9])
    with pytest.raises(ValueError, match="features"):
        block_delta(torch.randn(2, 11), torch.zeros(1, 4, 4), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long), grid)


def _problem(data, weighted):
    grid = data.draw(grids)
    k = data.draw(st.integers(0, min(grid.n_blocks, 6)))
    ids = data.draw(st.permutations(range(grid.n_blocks)))[:k]
    seed = data.draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    lead = data.draw(st.sampled_from([(3,), (2, 5)]))
    x = torch.randn(*lead, grid.in_features, generator=gen, dtype=torch.float64, requires_grad=True)
    blocks = torch.randn(k, grid.block_size, grid.block_size, generator=gen, dtype=torch.float64, requires_grad=True)
    rows, cols = grid.rows_cols(ids)
    w = torch.rand(lead[0], k, generator=gen, dtype=torch.float64, requires_grad=True) if weighted else None
    gy = torch.randn(*lead, grid.out_features, generator=gen, dtype=torch.float64)
    return grid, x, blocks, rows, cols, w, gy


@SPEC
@given(st.data(), st.booleans())
def test_fast_product_equals_dense_reference(data, weighted):
    grid, x, blocks, rows, cols, w, gy = _problem(data, weighted)
    fast = block_delta(x, blocks, rows, cols, grid, w)
    ref = block_delta_reference(x, blocks, rows, cols, grid, w)
    torch.testing.assert_close(fast, ref)
    inputs = [x, blocks] + ([w] if weighted else [])
    if blocks.shape[0] == 0:
        return
    g_fast = torch.autograd.grad(fast, inputs, gy)
    g_ref = torch.autograd.grad(ref, inputs, gy)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b)


def test_fast_product_matches_dense_matmul_and_gradcheck():
    grid = BlockGrid(13, 11, 4)  # ragged on both sides
    rows, cols = grid.rows_cols([0, 5, 11])
    blocks = torch.randn(3, 4, 4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 3, 11, dtype=torch.float64, requires_grad=True)
    w = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    dense = blocks_to_dense(blocks, rows, cols, grid)
    assert dense.shape == (13, 11)
    torch.testing.assert_close(block_delta(x, blocks, rows, cols, grid), x @ dense.T)
    assert torch.autograd.gradcheck(lambda a, b, c: block_delta(a, b, rows, cols, grid, c), (x, blocks, w))


def test_padding_outside_ragged_edge_is_ignored_and_gets_no_gradient():
    grid = BlockGrid(5, 6, 4)
    rows, cols = grid.rows_cols([grid.n_blocks - 1])  # the 1x2 corner block
    blocks = torch.randn(1, 4, 4, requires_grad=True)
    x = torch.randn(3, 6)
    block_delta(x, blocks, rows, cols, grid).sum().backward()
    valid = torch.zeros(4, 4, dtype=torch.bool)
    valid[:1, :2] = True
    assert bool((blocks.grad[0][~valid] == 0).all())
    assert bool((blocks.grad[0][valid] != 0).all())


def test_backward_saves_only_gathered_columns():
    grid = BlockGrid(64, 64, 8)
    rows, cols = grid.rows_cols([3, 17])
    blocks = torch.randn(2, 8, 8, requires_grad=True)
    x = torch.randn(4, 10, 64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        block_delta(x, blocks, rows, cols, grid)
    assert (2, 40, 8) in saved  # gathered columns (k, N, b)
    assert (4, 10, 64) not in saved and (40, 64) not in saved  # never the full input


@SPEC
@given(st.data(), st.booleans())
def test_in_place_inference_product_equals_dense_reference(data, weighted):
    grid, x, blocks, rows, cols, w, _ = _problem(data, weighted)
    x, blocks = x.detach(), blocks.detach()
    w = None if w is None else w.detach()
    y0 = torch.randn(*x.shape[:-1], grid.out_features, dtype=torch.float64)
    y = y0.clone()
    out = block_delta_add_(y, x, blocks, rows, cols, grid, w)
    assert out is y  # in place
    torch.testing.assert_close(y, y0 + block_delta_reference(x, blocks, rows, cols, grid, w))


@pytest.mark.parametrize("out_features", [64, 60])  # b | d_out (in-place path) and ragged (general path)
def test_in_place_product_into_bf16_rounds_the_summed_delta_once(out_features):
    """fp32 blocks into a bf16 output: the result is y + delta.to(bf16), not a sum of rounded parts."""
    grid = BlockGrid(out_features, 48, 16)
    g = torch.Generator().manual_seed(0)
    ids = [0, grid.n_cols, 2 * grid.n_cols + 1, 1, grid.n_cols + 2]  # several blocks share output rows
    rows, cols = grid.rows_cols(ids)
    blocks = torch.randn(len(ids), 16, 16, generator=g)
    x = torch.randn(3, 5, 48, generator=g).to(torch.bfloat16)
    w = torch.rand(3, len(ids), generator=g)
    y = torch.randn(3, 5, out_features, generator=g).to(torch.bfloat16)
    expect = y + block_delta(x.float(), blocks, rows, cols, grid, w).to(torch.bfloat16)
    got = block_delta_add_(y.clone(), x, blocks, rows, cols, grid, w)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, expect)


def test_in_place_product_rejects_bad_shapes_and_grad():
    grid = BlockGrid(8, 8, 4)
    rows, cols = grid.rows_cols([0, 3])
    blocks, x = torch.randn(2, 4, 4), torch.randn(2, 8)
    with pytest.raises(ValueError, match="y must be"):
        block_delta_add_(torch.zeros(2, 9), x, blocks, rows, cols, grid)
    with pytest.raises(ValueError, match="weights"):
        block_delta_add_(torch.zeros(2, 8), x, blocks, rows, cols, grid, torch.ones(3, 2))
    y = torch.zeros(2, 8)
    block_delta_add_(y, x, blocks.requires_grad_(), rows, cols, grid)
    assert not y.requires_grad  # no autograd: an inference path
    torch.testing.assert_close(y, block_delta_reference(x, blocks.detach(), rows, cols, grid))
