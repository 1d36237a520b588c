"""A layer's route and what its forward reads (`seta.models.layer.SparseBlockLinear`): the block
coordinates of the routed positions, and, built at the first no-grad forward, the in-place path's
tensors (routed blocksᵀ in the compute dtype, per-example weights, row slots), rebuilt when the
stack's values change (its version counter)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["NoGradTensors", "RoutePlan"]


@dataclass(frozen=True)
class NoGradTensors:
    """What the in-place (no-grad) delta reads, for one compute dtype and one state of the stack."""

    dtype: torch.dtype  # the compute dtype
    stack: weakref.ref  # the stack built from (a deep copy of the layer has its own: rebuilt there)
    version: int  # the stack's version counter when built
    blocks_t: Tensor  # (k, b, b) routed blocksᵀ in dtype (weights equal for every example folded in)
    wt: Tensor | None  # (k, B, 1, 1) per-example weights in dtype, or None
    slots: tuple[Tensor, Tensor]  # torch.unique(rows, return_inverse=True)

    def current(self, stack: Tensor) -> bool:
        """Whether these tensors still hold the stack's values. The one staleness check: every in-place
        write to the stack (optimizer steps, `write`, end_training, state-dict and checkpoint loads, users)
        bumps its version counter, as autograd's saved-tensor check relies on; a new Parameter or storage
        comes with a rebuilt plan, and a deep copy's stack is another object (compared by identity);
        writes through `.data` would go unseen (seta makes none to blocks)."""
        return self.stack() is stack and self.version == stack._version


@dataclass(eq=False)
class RoutePlan:
    """One route of a layer and what its forward reads; built by `restore_route` (and so `set_route`),
    rebuilt by the layer wherever an input changes under the same route (`SparseBlockLinear._replan`)."""

    route: tuple  # (positions (k,) sorted, weights (B, k) | None), what `get_route` returns
    rows: Tensor  # (k,) block rows of the routed positions
    cols: Tensor  # (k,) block columns
    copy_index: tuple | None  # `_working_copy_index` of the positions while a working copy exists, else None
    no_grad: NoGradTensors | None = None  # built at the first no-grad forward (`no_grad_tensors`)

    positions = property(lambda self: self.route[0])  # (k,)
    weights = property(lambda self: self.route[1])  # (B, k) | None

    def select(self, stack: Tensor) -> Tensor:
        """The routed blocks (k, b, b) of stack (k_l, b, b): the stack itself when every block is
        routed (positions sorted and unique, so the identity)."""
        pos = self.positions
        return stack if pos.numel() == stack.shape[0] else stack.index_select(0, pos)

    def no_grad_tensors(self, stack: nn.Parameter, dtype: torch.dtype) -> NoGradTensors:
        """The in-place path's tensors for the stack's current values in dtype, built once: weights equal
        for every example (one expert for the batch) folded into blocksᵀ (in the blocks' dtype, then cast),
        and a contiguous copy of the routed blocksᵀ."""
        ng = self.no_grad
        if ng is None or ng.dtype != dtype or not ng.current(stack):
            w = self.weights
            with torch.inference_mode(False):  # normal tensors, whichever mode builds them
                routed = self.select(stack.detach())
                wt = None
                if w is not None and bool((w == w[:1]).all()):
                    routed = routed * w[0].to(routed)[:, None, None]  # (k, b, b)
                elif w is not None:
                    wt = w.t().to(dtype).contiguous()[:, :, None, None]  # (k, B, 1, 1)
                slots = torch.unique(self.rows, return_inverse=True)
                blocks_t = routed.to(dtype).transpose(1, 2).contiguous()  # (k, b, b)
                ng = NoGradTensors(dtype, weakref.ref(stack), stack._version, blocks_t, wt, slots)
            self.no_grad = ng
        return ng
