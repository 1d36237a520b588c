"""The sparse block-delta product (block geometry: `seta.core.grid`, re-exported here).

A target weight W (out x in) is tiled into b x b blocks; block (r, c) covers rows
[r*b, min((r+1)*b, out)) and columns [c*b, min((c+1)*b, in)) -- edge blocks may
be ragged. A block id is ``r * n_cols + c``.

An expert's update is a set of k blocks stored as one padded tensor
``blocks`` (k, b, b) with coordinates ``rows``/``cols`` (k,). Its delta is

    y = x ΔWᵀ,   ΔW = Σ_i scatter(blocks[i] → rows_i, cols_i)

computed without ever building ΔW:

    y[..., rows_i] += w_i · x[..., cols_i] @ blocks[i]ᵀ      for every block i

(gather input columns → batched matmul → index_add into output rows). Entries
of a padded block that fall outside a ragged edge are ignored.

Two fast paths compute it: `block_delta` (differentiable, for training) and
`block_delta_add_` (in place into the base output, no autograd, for inference);
`block_delta_reference` builds the dense ΔW and is the oracle both are tested
against.

Precision: both fast paths compute in the dtype they are given (`block_delta`: x's,
`block_delta_add_`: blocks'), also inside a `torch.autocast` region, which they switch off for
their own ops: autocast would run the bmm in bf16 but leave index_add_ and the zero buffer in
fp32, and mixing the two fails. Which dtype the delta should run in under autocast is the
caller's choice (`autocast_dtype` tells it what autocast would use).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from seta.core.grid import BlockGrid, BlockIndex

__all__ = ["BlockGrid", "BlockIndex", "block_delta", "block_delta_add_", "block_delta_reference", "blocks_to_dense",
           "autocast_dtype", "delta_add_"]


def _check_blocks(x: Tensor, blocks: Tensor, rows: Tensor, cols: Tensor, grid: BlockGrid, weights):
    b = grid.block_size
    if x.shape[-1] != grid.in_features:
        raise ValueError(f"x has {x.shape[-1]} features, the grid expects {grid.in_features}")
    if blocks.dim() != 3 or blocks.shape[1:] != (b, b):
        raise ValueError(f"blocks must be (k, {b}, {b}), got {tuple(blocks.shape)}")
    k = blocks.shape[0]
    if rows.shape != (k,) or cols.shape != (k,):
        raise ValueError(f"rows and cols must be ({k},), got {tuple(rows.shape)}, {tuple(cols.shape)}")
    if weights is not None and weights.shape != (x.shape[0], k):
        raise ValueError(f"weights must be (B={x.shape[0]}, k={k}), got {tuple(weights.shape)}")


def blocks_to_dense(blocks: Tensor, rows: Tensor, cols: Tensor, grid: BlockGrid) -> Tensor:
    """ΔW = Σ_i scatter(blocks[i] → block (rows_i, cols_i)), (out, in). Reference only."""
    b = grid.block_size
    dense = blocks.new_zeros(grid.n_rows * b, grid.n_cols * b)
    for i in range(blocks.shape[0]):
        r, c = int(rows[i]), int(cols[i])
        patch = torch.zeros_like(dense)
        patch[r * b : (r + 1) * b, c * b : (c + 1) * b] = blocks[i]
        dense = dense + patch  # out-of-place so autograd reaches every block
    return dense[: grid.out_features, : grid.in_features]


def block_delta_reference(x, blocks, rows, cols, grid: BlockGrid, weights=None) -> Tensor:
    """Slow, obviously correct y = x ΔWᵀ (per example: y_n = x_n (Σ_i w_{n,i} ΔW_i)ᵀ)."""
    _check_blocks(x, blocks, rows, cols, grid, weights)
    if weights is None:
        return x @ blocks_to_dense(blocks, rows, cols, grid).T
    outs = []
    for n in range(x.shape[0]):
        dense = blocks_to_dense(blocks * weights[n][:, None, None], rows, cols, grid)
        outs.append(x[n] @ dense.T)
    return torch.stack(outs)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype `torch.autocast` runs matmuls in on `device` right now, None when it is off there."""
    try:
        on = torch.is_autocast_enabled(device.type)
    except RuntimeError:  # a device type autocast does not know (meta): never on
        return None
    return torch.get_autocast_dtype(device.type) if on else None


def _autocast_off(t: Tensor):
    """Context in which autocast leaves t's device alone, so every op runs in its inputs' dtype."""
    return torch.autocast(t.device.type, enabled=False) if autocast_dtype(t.device) else contextlib.nullcontext()


def _padded(t: Tensor, width: int) -> Tensor:
    """t (N, d) zero-padded on the right to (N, width); t itself (no copy) when d == width."""
    return t if t.shape[1] == width else torch.nn.functional.pad(t, (0, width - t.shape[1]))


class _BlockDelta(torch.autograd.Function):
    """Fast path; saves only the gathered input columns xg (k, N, b). x2, blocks and weights share
    one dtype, and every op of forward and backward runs in it (autocast off, see the module doc)."""

    @staticmethod
    def forward(ctx, x2, blocks, rows, cols, weights, n_rows, n_cols, b, d_out):
        with _autocast_off(x2):
            return _BlockDelta._forward(ctx, x2, blocks, rows, cols, weights, n_rows, n_cols, b, d_out)

    @staticmethod
    def _forward(ctx, x2, blocks, rows, cols, weights, n_rows, n_cols, b, d_out):
        # x2: (N, d_in) tokens flattened; weights: (N, k) or None
        N, d_in = x2.shape
        k = blocks.shape[0]
        xg = _padded(x2, n_cols * b).reshape(N, n_cols, b).index_select(1, cols).transpose(0, 1)  # (k, N, b)
        out = torch.bmm(xg, blocks.transpose(1, 2))  # (k, N, b)
        if weights is not None:
            out = out * weights.t().unsqueeze(-1)  # (k, N, 1)
        y = x2.new_zeros(N, n_rows, b).index_add_(1, rows, out.transpose(0, 1))  # (N, n_rows, b)
        y = y.view(N, n_rows * b)[:, :d_out]
        ctx.save_for_backward(xg, blocks, rows, cols, weights)
        ctx.dims = (N, d_in, n_rows, n_cols, b, d_out, k)
        return y

    @staticmethod
    def backward(ctx, gy):
        with _autocast_off(gy):  # loss.backward() may be called inside an autocast region
            return _BlockDelta._backward(ctx, gy)

    @staticmethod
    def _backward(ctx, gy):
        xg, blocks, rows, cols, weights = ctx.saved_tensors
        N, d_in, n_rows, n_cols, b, d_out, k = ctx.dims
        gyp = _padded(gy, n_rows * b).reshape(N, n_rows, b)
        gout = gyp.index_select(1, rows).transpose(0, 1)  # (k, N, b) grad of each block's output
        g_w = None
        if weights is not None:
            if ctx.needs_input_grad[4]:
                raw = torch.bmm(xg, blocks.transpose(1, 2))  # (k, N, b), recomputed
                g_w = (gout * raw).sum(-1).t()  # (N, k)
            gout = gout * weights.t().unsqueeze(-1)
        g_x = g_blocks = None
        if ctx.needs_input_grad[0]:
            gxg = torch.bmm(gout, blocks)  # (k, N, b)
            gxp = gy.new_zeros(N, n_cols, b).index_add_(1, cols, gxg.transpose(0, 1))  # (N, n_cols, b)
            g_x = gxp.view(N, n_cols * b)[:, :d_in]
        if ctx.needs_input_grad[1]:
            g_blocks = torch.bmm(gout.transpose(1, 2), xg)  # (k, b, b)
        return g_x, g_blocks, None, None, g_w, None, None, None, None


def block_delta(x: Tensor, blocks: Tensor, rows: Tensor, cols: Tensor, grid: BlockGrid, weights=None) -> Tensor:
    """y = Σ_i w_i · scatter_rows_i(x[..., cols_i] @ blocks[i]ᵀ), without building ΔW.

    x: (B, ..., d_in); blocks: (k, b, b); rows, cols: (k,) long;
    weights: None or (B, k), weights[n] scaling every block for example x[n].
    Returns (B, ..., d_out) in x's dtype, computed in it (blocks and weights are cast to it, and
    their gradients come back in their own dtypes), autocast or not. Differentiable in x, blocks
    and weights.
    """
    _check_blocks(x, blocks, rows, cols, grid, weights)
    lead = x.shape[:-1]
    if blocks.shape[0] == 0:
        return x.new_zeros(*lead, grid.out_features)
    blocks = blocks.to(x.dtype)
    x2 = x.reshape(-1, grid.in_features)  # (N, d_in), N = B * T
    w = None
    if weights is not None:
        per_example = x2.shape[0] // x.shape[0]  # tokens per example
        w = weights.to(x.dtype).repeat_interleave(per_example, dim=0)  # (N, k)
    y = _BlockDelta.apply(x2, blocks, rows, cols, w, grid.n_rows, grid.n_cols, grid.block_size, grid.out_features)
    return y.reshape(*lead, grid.out_features)


@torch.no_grad()
def block_delta_add_(y: Tensor, x: Tensor, blocks: Tensor, rows: Tensor, cols: Tensor, grid: BlockGrid,
                     weights=None) -> Tensor:
    """In place, no autograd: y += x ΔWᵀ, i.e. y[n, ..., rows_i] += w_{n,i} · x[n, ..., cols_i] @ blocks[i]ᵀ.

    The inference path of `block_delta`: it adds into the base output y instead of building a
    zero-filled delta, so besides y it only touches k·N·b entries (N tokens). The product runs in
    blocks' dtype, autocast or not; when y has another dtype, the contributions of each output row
    block are first summed in blocks' dtype and then rounded once into y (as y + delta.to(y.dtype)
    would).
    y: (B, ..., d_out); x: (B, ..., d_in); weights: None or (B, k). Returns y.
    """
    _check_blocks(x, blocks, rows, cols, grid, weights)
    if y.shape != (*x.shape[:-1], grid.out_features):
        raise ValueError(f"y must be {(*x.shape[:-1], grid.out_features)}, got {tuple(y.shape)}")
    if blocks.shape[0] == 0:
        return y
    if grid.out_features % grid.block_size or not y.is_contiguous():  # ragged output edge: the general product
        return y.add_(block_delta(x.to(blocks.dtype), blocks, rows, cols, grid, weights).to(y.dtype))
    wt = None if weights is None else weights.t().to(blocks.dtype)[:, :, None, None]  # (k, B, 1, 1)
    slots = None if y.dtype == blocks.dtype else torch.unique(rows, return_inverse=True)
    return delta_add_(y, x, blocks.transpose(1, 2), rows, cols, grid, wt, slots)


def delta_add_(y: Tensor, x: Tensor, blocks_t: Tensor, rows: Tensor, cols: Tensor, grid: BlockGrid,
               wt: Tensor | None, slots: tuple[Tensor, Tensor] | None) -> Tensor:
    """`block_delta_add_` without checks, for callers that built valid inputs once (the layer, per route).

    blocks_t: (k, b, b) = blocksᵀ per block; wt: None or (k, B, 1, 1) weights; y contiguous, b | d_out;
    slots: None when y has blocks' dtype, else torch.unique(rows, return_inverse=True).
    """
    with _autocast_off(y):
        return _delta_add_impl(y, x, blocks_t, rows, cols, grid, wt, slots)


def _delta_add_impl(y, x, blocks_t, rows, cols, grid, wt, slots):
    b = grid.block_size
    if grid.in_features % b:  # ragged input edge: zero-pad a copy
        x = _padded(x.reshape(-1, grid.in_features), grid.n_cols * b)
    xg = x.reshape(-1, grid.n_cols, b).index_select(1, cols).transpose(0, 1)  # (k, N, b)
    if xg.dtype != blocks_t.dtype:
        xg = xg.to(blocks_t.dtype)
    out = torch.bmm(xg, blocks_t)  # (k, N, b)
    if wt is not None:
        out.view(out.shape[0], wt.shape[1], -1, b).mul_(wt)  # (k, B, T, b) * (k, B, 1, 1)
    yr = y.view(-1, grid.n_rows, b)  # (N, n_rows, b), a view of y
    if slots is None:
        yr.index_add_(1, rows, out.transpose(0, 1))
        return y
    uniq, slot = slots  # sum per row block in blocks' dtype, round once
    acc = out.new_zeros(uniq.numel(), *out.shape[1:]).index_add_(0, slot, out)  # (r, N, b)
    yr.index_add_(1, uniq, acc.transpose(0, 1).to(y.dtype))
    return y

