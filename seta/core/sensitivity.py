"""Block sensitivity (docs/method.md §1) and the element-wise empirical Fisher (§3).

Sensitivity of a block B of a layer's weight W (out x in), for one micro-batch:

    G       = dL/dW = dy^T x                      x: (N, d_in), dy: (N, d_out), tokens flattened
    s_B     = (1 / |B|) * sum_{e in B} G_e^2      |B| = element count of B (ragged edges are smaller)

and the task score is the mean of s_B over the micro-batches actually seen. G is built one row-block
(b x d_in) at a time, so no more than one row-block of one layer's gradient exists at any moment.

The element-wise Fisher used for anchoring after a task is the *empirical Fisher of micro-batch
gradients*: F_e = (1 / M) * sum_{m=1..M} (dL_m / dtheta_e)^2, M = micro-batches actually seen.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seta.core.blocks import BlockGrid, _autocast_off

__all__ = [
    "blockwise_mean_square",
    "block_fisher_scores",
    "SensitivityAccumulator",
    "FisherAccumulator",
]


def _flatten_tokens(x: Tensor, dy: Tensor, grid: BlockGrid) -> tuple[Tensor, Tensor]:
    if x.shape[-1] != grid.in_features or dy.shape[-1] != grid.out_features:
        raise ValueError(
            f"x (..., {grid.in_features}) and dy (..., {grid.out_features}) expected for this grid, "
            f"got x {tuple(x.shape)} and dy {tuple(dy.shape)}; pass the layer's input and output gradient"
        )
    if x.shape[:-1] != dy.shape[:-1]:
        raise ValueError(f"x {tuple(x.shape)} and dy {tuple(dy.shape)} must share their leading (token) dims")
    return x.reshape(-1, grid.in_features), dy.reshape(-1, grid.out_features)  # (N, d_in), (N, d_out)


def _row_sums_by_col_block(g_sq: Tensor, grid: BlockGrid) -> Tensor:
    """(r, d_in) -> (n_cols,): sum of g_sq over each column block (ragged last block padded with 0)."""
    pad = grid.n_cols * grid.block_size - grid.in_features
    if pad:
        g_sq = torch.nn.functional.pad(g_sq, (0, pad))  # (r, n_cols * b)
    return g_sq.reshape(g_sq.shape[0], grid.n_cols, grid.block_size).sum(dim=(0, 2))  # (n_cols,)


def blockwise_mean_square(g: Tensor, grid: BlockGrid) -> Tensor:
    """Reference from a full gradient: s_B = (1/|B|) sum_{e in B} g_e^2 for every block B.

    g: (out_features, in_features). Returns (n_blocks,) float64, block id = row * n_cols + col.
    """
    if tuple(g.shape) != (grid.out_features, grid.in_features):
        raise ValueError(f"g must be ({grid.out_features}, {grid.in_features}), got {tuple(g.shape)}")
    g_sq = g.detach().to(torch.float64).square()  # (out, in)
    b = grid.block_size
    sums = torch.stack(
        [_row_sums_by_col_block(g_sq[r * b : (r + 1) * b], grid) for r in range(grid.n_rows)]
    )  # (n_rows, n_cols)
    return sums.reshape(-1) / grid.numels().to(device=sums.device, dtype=torch.float64)


def block_fisher_scores(x: Tensor, dy: Tensor, grid: BlockGrid) -> Tensor:
    """Block sensitivity of one micro-batch: G = dy^T x, s_B = (1/|B|) sum_{e in B} G_e^2.

    x: (..., d_in) layer input; dy: (..., d_out) gradient of the loss w.r.t. the layer output
    (leading token dims are flattened to N), of any float dtype: G is computed in fp32 (fp64 if
    either is fp64), autocast or not. G is formed one row-block at a time:
    G_r = dy[:, rows_r]^T x  (b_r, d_in), so at most b x d_in gradient entries exist at once.
    Returns (n_blocks,) float64.
    """
    x2, dy2 = _flatten_tokens(x.detach(), dy.detach(), grid)  # (N, d_in), (N, d_out)
    work = torch.float64 if x2.dtype == torch.float64 or dy2.dtype == torch.float64 else torch.float32
    x2 = x2.to(work)
    b = grid.block_size
    out = torch.empty(grid.n_rows, grid.n_cols, dtype=torch.float64, device=x2.device)
    with _autocast_off(x2):  # G in `work` also when the probe's backward runs under autocast
        for r in range(grid.n_rows):
            g_r = dy2[:, r * b : (r + 1) * b].to(work).T @ x2  # (b_r, d_in)
            out[r] = _row_sums_by_col_block(g_r.square(), grid).to(torch.float64)
            del g_r
    return out.reshape(-1) / grid.numels().to(device=out.device, dtype=torch.float64)


class _MicroBatchMean:
    """Sum of per-micro-batch tensors, divided by the number of micro-batches actually seen.

    A micro-batch counts once ``end_micro_batch`` is called after at least one ``add``; a name may be
    added at most once per micro-batch. A name missing from a micro-batch contributes zero to it.
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._current: set[str] = set()
        self._n = 0

    def _accumulate(self, name: str, value: Tensor) -> None:
        if name in self._current:
            raise ValueError(
                f"'{name}' was already added in this micro-batch; concatenate its tokens into one call "
                "or call end_micro_batch() between micro-batches"
            )
        self._current.add(name)
        if name in self._sums:
            if self._sums[name].shape != value.shape:
                raise ValueError(f"'{name}': shape {tuple(value.shape)} differs from earlier {tuple(self._sums[name].shape)}")
            self._sums[name] += value
        else:
            self._sums[name] = value.clone()

    def end_micro_batch(self) -> bool:
        """Close the current micro-batch. Returns True if it counted (something was added)."""
        counted = bool(self._current)
        self._n += int(counted)
        self._current = set()
        return counted

    @property
    def n_micro_batches(self) -> int:
        """Number of micro-batches actually seen (closed with at least one add)."""
        return self._n

    def _mean(self) -> dict[str, Tensor]:
        if self._current:
            raise ValueError("a micro-batch is still open; call end_micro_batch() before reading the mean")
        if self._n == 0:
            raise ValueError("no micro-batch was seen; add() contributions and call end_micro_batch() first")
        return {name: s / self._n for name, s in self._sums.items()}


class SensitivityAccumulator(_MicroBatchMean):
    """Task score per block: score_B = (1/M) sum_{m=1..M} s_B^(m), M = micro-batches actually seen,
    s_B^(m) = block_fisher_scores(x_m, dy_m) of one layer. Holds only (n_blocks,) vectors per layer."""

    def __init__(self, grids: dict[str, BlockGrid]):
        super().__init__()
        self.grids = dict(grids)

    def add(self, name: str, x: Tensor, dy: Tensor) -> None:
        """Add layer `name`'s contribution for the current micro-batch (x: (..., d_in), dy: (..., d_out))."""
        if name not in self.grids:
            raise ValueError(f"unknown layer '{name}'; known layers: {sorted(self.grids)[:5]}...")
        self._accumulate(name, block_fisher_scores(x, dy, self.grids[name]))

    def scores(self) -> dict[str, Tensor]:
        """name -> (n_blocks,) float64 mean block score, on the device of the added tensors;
        layers never added score 0 (on the CPU)."""
        means = self._mean()
        return {
            name: means.get(name, torch.zeros(grid.n_blocks, dtype=torch.float64))
            for name, grid in self.grids.items()
        }


class FisherAccumulator(_MicroBatchMean):
    """Element-wise empirical Fisher: F_e = (1/M) sum_{m=1..M} g_{m,e}^2, g_m = gradient of micro-batch
    m's loss, M = micro-batches actually seen. Tensors of any shape, e.g. stacked blocks (k, b, b)."""

    def add(self, name: str, grad_sq: Tensor) -> None:
        """Add g_m^2 (already squared) of parameter `name` for the current micro-batch."""
        self._accumulate(name, grad_sq.detach().to(torch.float32))

    def mean(self) -> dict[str, Tensor]:
        """name -> float32 tensor, the empirical Fisher (mean squared gradient)."""
        return self._mean()
