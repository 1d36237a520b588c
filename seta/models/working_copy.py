"""The working copy of a `SparseBlockLinear`: a task trains its own blocks, not the whole stack.

    train_blocks = blocks[positions]        (k_t, b, b), its own Parameter, while the task trains
    blocks[positions] ← train_blocks        at `end_training`

`begin_training(positions)` copies the task's blocks into `train_blocks` and freezes the stack;
reads of those positions (forward, `read`) see the working copy, differentiably; `end_training()`
writes it back. Gradients and optimizer state then cover the k_t trained blocks only: the same
updates as training the whole stack with weight_decay=0 (the other blocks get zero gradient), at a
fraction of the memory once many tasks are stored. The stack stays the one storage of every block.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

__all__ = ["WorkingCopy"]


class WorkingCopy:
    """Mixin of `SparseBlockLinear` (uses its `blocks`, `n_blocks`, `_replan`)."""

    def begin_training(self, positions: Tensor) -> nn.Parameter | None:
        """Train the blocks at stack `positions` through a working copy: returns the new Parameter
        `train_blocks` (k_t, b, b) (None if positions is empty); the stack stops requiring grad."""
        self.end_training()
        pos = torch.as_tensor(positions, dtype=torch.long).reshape(-1).unique(sorted=True).to(self.blocks.device)
        if pos.numel() == 0:
            return None
        slot = torch.full((self.n_blocks,), -1, dtype=torch.long, device=pos.device)
        slot[pos] = torch.arange(pos.numel(), device=pos.device)
        self.train_blocks = nn.Parameter(self.blocks.detach().index_select(0, pos).clone())
        self._train_slot, self._train_pos = slot, pos
        self.blocks.requires_grad_(False)
        self._replan()  # the route now reads the working copy
        return self.train_blocks

    def end_training(self) -> None:
        """Write the working copy back into the stack (no-op without one); the stack requires grad again."""
        if self.train_blocks is None:
            return
        with torch.no_grad():
            self.blocks.index_copy_(0, self._train_pos, self.train_blocks.detach().to(self.blocks.dtype))
        self.train_blocks, self._train_slot, self._train_pos = None, None, None
        self.blocks.requires_grad_(True)
        self._replan()

    @contextlib.contextmanager
    def stored_values(self):
        """Within: forward and `read` see the values stored in the stack, the working copy set aside
        (the stack is written only by `end_training`, so this is the layer as training began)."""
        saved = (self.train_blocks, self._train_slot, self._train_pos)
        self.train_blocks = self._train_slot = self._train_pos = None
        self._replan()
        try:
            yield self
        finally:
            self.train_blocks, self._train_slot, self._train_pos = saved
            self._replan()

    def read(self, positions: Tensor) -> Tensor:
        """Current values of the blocks at stack `positions` (k, b, b), differentiable w.r.t. whatever
        trains them (the stack, or the working copy for its positions)."""
        pos = torch.as_tensor(positions, dtype=torch.long).reshape(-1).to(self.blocks.device)
        if self.train_blocks is None:
            return self.blocks.index_select(0, pos)
        return self._read(pos, self._working_copy_index(pos))

    def _working_copy_index(self, pos: Tensor):
        """How `_read` assembles pos (k,) from stack and working copy: None when pos is exactly the
        trained blocks, else (hit (h,), src (h,)): the entries of pos that are trained, and their rows
        in the working copy. Synchronises with the device: built once per `RoutePlan`."""
        slot = self._train_slot.index_select(0, pos)  # (k,)
        if pos.numel() == self.train_blocks.shape[0] and bool((slot == torch.arange(pos.numel(), device=pos.device)).all()):
            return None
        hit = torch.nonzero(slot >= 0).reshape(-1)
        return hit, slot.index_select(0, hit)

    def _read(self, pos: Tensor, copy_index) -> Tensor:
        if copy_index is None:
            return self.train_blocks  # the trained blocks, in order
        hit, src = copy_index
        out = self.blocks.detach().index_select(0, pos)
        return out if hit.numel() == 0 else out.index_copy(0, hit, self.train_blocks.index_select(0, src))

    @torch.no_grad()
    def write(self, positions: Tensor, values: Tensor) -> None:
        """Overwrite the blocks at stack `positions` with values (k, b, b) (in the working copy too)."""
        pos = torch.as_tensor(positions, dtype=torch.long).reshape(-1).to(self.blocks.device)
        self.blocks[pos] = values.to(self.blocks)
        if self.train_blocks is not None:
            slot = self._train_slot.index_select(0, pos)
            hit = torch.nonzero(slot >= 0).reshape(-1)
            self.train_blocks[slot[hit]] = values.to(self.train_blocks)[hit.to(values.device)]
