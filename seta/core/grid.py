"""Block geometry: a weight tiled into b x b blocks, and global block ids over many layers.

A target weight W (out x in) is tiled into b x b blocks; block (r, c) covers rows
[r*b, min((r+1)*b, out)) and columns [c*b, min((c+1)*b, in)) -- edge blocks may
be ragged. A block id is ``r * n_cols + c``; a global id is ``offsets[layer] + id``
over the targeted layers in order (`BlockIndex`), so one model-wide top-k compares them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BlockGrid", "BlockIndex"]


@dataclass(frozen=True)
class BlockGrid:
    """Tiling of one (out_features, in_features) weight into block_size² blocks."""

    out_features: int  # rows of W
    in_features: int  # columns of W
    block_size: int  # b; edge blocks are ragged when b does not divide a side

    def __post_init__(self) -> None:
        for name in ("out_features", "in_features", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BlockGrid.{name} must be a positive int, got {value!r}")

    @property
    def n_rows(self) -> int:
        """ceil(out / b)."""
        return math.ceil(self.out_features / self.block_size)

    @property
    def n_cols(self) -> int:
        """ceil(in / b)."""
        return math.ceil(self.in_features / self.block_size)

    @property
    def n_blocks(self) -> int:
        return self.n_rows * self.n_cols

    def _check(self, block_id: int) -> int:
        block_id = int(block_id)
        if not 0 <= block_id < self.n_blocks:
            raise ValueError(f"block id {block_id} outside [0, {self.n_blocks}) for {self}")
        return block_id

    def block_id(self, row: int, col: int) -> int:
        """id = row · n_cols + col."""
        if not (0 <= row < self.n_rows and 0 <= col < self.n_cols):
            raise ValueError(f"block ({row}, {col}) outside the {self.n_rows}x{self.n_cols} grid")
        return row * self.n_cols + col

    def row_col(self, block_id: int) -> tuple[int, int]:
        """(row, col) = divmod(id, n_cols)."""
        return divmod(self._check(block_id), self.n_cols)

    def slices(self, block_id: int) -> tuple[slice, slice]:
        """Element slices of the block, clipped at ragged edges."""
        r, c = self.row_col(block_id)
        b = self.block_size
        return (
            slice(r * b, min((r + 1) * b, self.out_features)),
            slice(c * b, min((c + 1) * b, self.in_features)),
        )

    def numel(self, block_id: int) -> int:
        """|B| = (rows in B) · (cols in B)."""
        rs, cs = self.slices(block_id)
        return (rs.stop - rs.start) * (cs.stop - cs.start)

    def numels(self) -> Tensor:
        """|B| for every block id, (n_blocks,) long."""
        b = self.block_size
        h = torch.full((self.n_rows,), b, dtype=torch.long)
        h[-1] = self.out_features - (self.n_rows - 1) * b
        w = torch.full((self.n_cols,), b, dtype=torch.long)
        w[-1] = self.in_features - (self.n_cols - 1) * b
        return (h[:, None] * w[None, :]).reshape(-1)

    def rows_cols(self, block_ids) -> tuple[Tensor, Tensor]:
        """Block coordinates of ids, two (k,) long tensors."""
        ids = torch.as_tensor(block_ids, dtype=torch.long).reshape(-1)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.n_blocks):
            raise ValueError(f"block ids must lie in [0, {self.n_blocks}) for {self}")
        return ids // self.n_cols, ids % self.n_cols

    def mask(self, block_ids) -> Tensor:
        """Boolean (out, in) mask of the elements covered by block_ids."""
        m = torch.zeros(self.n_rows, self.n_cols, dtype=torch.bool)
        rows, cols = self.rows_cols(block_ids)
        m[rows, cols] = True
        b = self.block_size
        m = m.repeat_interleave(b, 0).repeat_interleave(b, 1)
        return m[: self.out_features, : self.in_features]


class BlockIndex:
    """Global block ids over an ordered set of named layers.

    global id = offsets[name] + local id, offsets being cumulative n_blocks in
    insertion order, so a model-wide top-k can compare blocks of all layers.
    """

    def __init__(self, grids: dict[str, BlockGrid]):
        if not grids:
            raise ValueError("BlockIndex needs at least one layer")
        self.grids = dict(grids)
        self.names = list(self.grids)
        self.offsets: dict[str, int] = {}
        total = 0
        for name, grid in self.grids.items():
            self.offsets[name] = total
            total += grid.n_blocks
        self.n_blocks = total
        self._starts = torch.tensor([self.offsets[n] for n in self.names], dtype=torch.long)

    def to_global(self, name: str, local_ids) -> Tensor:
        local = torch.as_tensor(local_ids, dtype=torch.long).reshape(-1)
        grid = self.grids[name]
        if local.numel() and (int(local.min()) < 0 or int(local.max()) >= grid.n_blocks):
            raise ValueError(f"local ids for {name!r} must lie in [0, {grid.n_blocks})")
        return local + self.offsets[name]

    def split(self, global_ids) -> dict[str, Tensor]:
        """name -> sorted local ids, for the layers that global_ids touch."""
        ids = torch.as_tensor(global_ids, dtype=torch.long).reshape(-1).unique(sorted=True)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.n_blocks):
            raise ValueError(f"global block ids must lie in [0, {self.n_blocks})")
        layer = torch.searchsorted(self._starts, ids, right=True) - 1
        out: dict[str, Tensor] = {}
        for i in layer.unique().tolist():
            name = self.names[i]
            out[name] = ids[layer == i] - self.offsets[name]
        return out

    def numels(self) -> Tensor:
        """|B| for every global id, (n_blocks,) long."""
        return torch.cat([g.numels() for g in self.grids.values()])
