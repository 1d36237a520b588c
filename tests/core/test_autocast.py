"""Core products inside a torch.autocast region compute in the dtype they are given (autocast is
switched off for their own ops), so results match the same call outside autocast bit for bit."""

import pytest
import torch

from seta.core.blocks import BlockGrid, autocast_dtype, block_delta, block_delta_add_, block_delta_reference, delta_add_
from seta.core.sensitivity import block_fisher_scores

AUTOCAST = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731


def _case(grid: BlockGrid, k: int = 5, batch: int = 2, tokens: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randperm(grid.n_blocks, generator=g)[:k]
    rows, cols = grid.rows_cols(ids)
    b = grid.block_size
    x = torch.randn(batch, tokens, grid.in_features, generator=g)  # (B, T, d_in)
    blocks = torch.randn(k, b, b, generator=g)
    weights = torch.rand(batch, k, generator=g)  # (B, k)
    return x, blocks, rows, cols, weights


def test_autocast_dtype_reports_the_region():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu) is None
    with AUTOCAST():
        assert autocast_dtype(cpu) == torch.bfloat16
    assert autocast_dtype(torch.device("meta")) is None  # a device autocast does not know


@pytest.mark.parametrize("on", ["cpu", "cuda", "mps", "xpu"])
def test_autocast_dtype_agrees_with_the_per_device_query_whichever_device_is_on(on):
    """A region on one device type shows on that type only (the state is set directly: no GPU is
    needed to switch a device type's autocast flag)."""
    before = torch.is_autocast_enabled(on), torch.get_autocast_dtype(on)
    torch.set_autocast_enabled(on, True)
    torch.set_autocast_dtype(on, torch.float16)
    try:
        for dev in ("cpu", "cuda", "mps", "xpu"):
            expected = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
            assert autocast_dtype(torch.device(dev)) == expected, dev
        assert autocast_dtype(torch.device(on)) == torch.float16
    finally:
        torch.set_autocast_enabled(on, before[0])
        torch.set_autocast_dtype(on, before[1])
    assert all(autocast_dtype(torch.device(d)) is None for d in ("cpu", "cuda", "mps", "xpu"))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("grid", [BlockGrid(32, 48, 8), BlockGrid(30, 20, 8)], ids=["even", "ragged"])
def test_block_delta_under_autocast_equals_outside(grid, weighted):
    x, blocks, rows, cols, w = _case(grid)
    w = w if weighted else None
    outs, grads = [], []
    for ctx in (torch.enable_grad, AUTOCAST):
        xx, bb = x.clone().requires_grad_(), blocks.clone().requires_grad_()
        ww = None if w is None else w.clone().requires_grad_()
        with ctx():
            y = block_delta(xx, bb, rows, cols, grid, ww)
            y.square().sum().backward()  # backward inside the region too
        assert y.dtype == torch.float32
        outs.append(y.detach())
        grads.append([xx.grad, bb.grad] + ([] if ww is None else [ww.grad]))
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=0)
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_block_delta_in_bf16_under_autocast_is_close_to_fp32():
    grid = BlockGrid(32, 48, 8)
    x, blocks, rows, cols, w = _case(grid)
    ref = block_delta_reference(x, blocks, rows, cols, grid, w)
    bb = blocks.clone().requires_grad_()
    with AUTOCAST():
        y = block_delta(x.bfloat16(), bb.bfloat16(), rows, cols, grid, w.bfloat16())
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert bb.grad.dtype == torch.float32  # fp32 master blocks get fp32 gradients
    torch.testing.assert_close(y.float(), ref, rtol=4 * 2**-8, atol=4 * 2**-8 * float(ref.abs().max()))


@pytest.mark.parametrize("y_dtype", [torch.float32, torch.bfloat16])
def test_in_place_product_under_autocast_equals_outside(y_dtype):
    grid = BlockGrid(32, 48, 8)
    x, blocks, rows, cols, w = _case(grid)
    y0 = torch.randn(2, 3, grid.out_features).to(y_dtype)
    plain = block_delta_add_(y0.clone(), x, blocks, rows, cols, grid, w)
    with AUTOCAST():
        inside = block_delta_add_(y0.clone(), x, blocks, rows, cols, grid, w)
    assert inside.dtype == y_dtype
    torch.testing.assert_close(inside, plain, rtol=0, atol=0)
    # the layer's call: inputs built once per route, no checks
    blocks_t, wt = blocks.transpose(1, 2), w.t().contiguous()[:, :, None, None]  # (k, b, b), (k, B, 1, 1)
    slots = None if y_dtype == torch.float32 else torch.unique(rows, return_inverse=True)
    outside = delta_add_(y0.clone(), x, blocks_t, rows, cols, grid, wt, slots)
    with AUTOCAST():
        inside = delta_add_(y0.clone(), x, blocks_t, rows, cols, grid, wt, slots)
    torch.testing.assert_close(outside, plain, rtol=0, atol=0)
    torch.testing.assert_close(inside, plain, rtol=0, atol=0)


def test_block_sensitivity_under_autocast_equals_outside():
    grid = BlockGrid(32, 48, 8)
    g = torch.Generator().manual_seed(1)
    x, dy = torch.randn(2, 5, 48, generator=g), torch.randn(2, 5, 32, generator=g)
    plain = block_fisher_scores(x, dy, grid)
    with AUTOCAST():
        inside = block_fisher_scores(x, dy, grid)
        from_bf16 = block_fisher_scores(x.bfloat16(), dy.bfloat16(), grid)  # G still formed in fp32
    torch.testing.assert_close(inside, plain, rtol=0, atol=0)
    torch.testing.assert_close(from_bf16, block_fisher_scores(x.bfloat16().float(), dy.bfloat16().float(), grid),
                               rtol=1e-6, atol=0)
