"""The sparse block adapter layer (method spec sections 3 and 5).

    y = base_layer(x) + Σ_{i routed} w_{n,i} · scatter_rows_i(x[..., cols_i] @ blocks[i]ᵀ)

`base_layer` is the untouched `nn.Linear` or bitsandbytes `Linear4bit`; its output is used as is.
Every allocated block of this layer lives in ONE stacked parameter `blocks` (k_l, b, b) plus the
buffer `local_ids` (k_l,) of block ids in this layer's grid; a block's position in the stack never
changes once created. The delta goes through `seta.core.blocks.block_delta` (gather → bmm →
index_add, backward saving only the gathered input columns): no dense ΔW is ever built.

Which blocks act, and with what per-example weight, is the layer's *route*, set from the model
(`SetaModel.set_expert` / `set_routing`), not passed through HF forward kwargs. Routes persist until
changed, so a backward pass that recomputes a checkpointed layer sees the same route.

Two paths compute the same delta. With grad enabled (training): `block_delta`, differentiable, added
out of place. With grad disabled (evaluation, `generate`): `seta.core.blocks` adds it in place into
the fresh base output, from per-route tensors (block coordinates, the routed blocks gathered and
transposed, the per-example weights) built at the first forward after the route or the stack
changed, so a decoding step runs only gather → bmm → (weights) → index_add per layer.

Precision: the delta runs in the layer's compute dtype (`compute_dtype`): the dtype `torch.autocast`
gives matmuls while it is on for the input's device (bf16 training and probes: the delta is run the
way autocast runs the base's matmul), else the blocks' own dtype. Blocks stay stored in their dtype
(fp32 master weights by default) and get their gradients in it; the delta is added to the base output
in the base output's dtype (bf16 for a dense layer under autocast, the input's dtype for a 4-bit one).

Growth: `add_blocks` replaces `blocks` by a new, larger Parameter (old values copied, new blocks
zero). An optimizer built before growth still points at the old Parameter: rebuild it after every
growth (the trainer builds a fresh AdamW per task after allocation). With weight_decay=0 on blocks,
blocks outside the current expert get zero gradient and a fresh Adam(W) leaves them bit-identical.

Working copy (what the trainer uses): `begin_training(positions)` trains the task's blocks through
their own Parameter `train_blocks`; `end_training()` writes it back (`seta.models.working_copy`).
The 4-bit layer is `seta.models.bnb`; which class wraps which linear, `seta.models.dispatch`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from seta.core.blocks import BlockGrid, autocast_dtype, block_delta, blocks_to_dense, delta_add_
from seta.models.working_copy import WorkingCopy

__all__ = ["SparseBlockLinear"]


class _RouteIndex(NamedTuple):
    """Block coordinates of one route (and, with a working copy, how to read its blocks); valid while
    `route` and the layer's `_rows` buffer are the very objects it was built from."""

    route: tuple
    rows_key: Tensor  # the layer's `_rows` when built (growth and device moves replace it)
    rows: Tensor  # (k,) block rows of the routed positions
    cols: Tensor  # (k,) block columns
    read_plan: tuple | None  # `_read_plan` of the positions while a working copy exists, else None


class _InferencePlan(NamedTuple):
    """What the no-grad forward needs for one route and compute dtype; valid while route, `_rows`,
    the stack (object, version counter, storage) and the dtype are those it was built from."""

    route: tuple
    rows_key: Tensor
    blocks: Tensor  # the stack Parameter it was built from
    version: int  # blocks._version then (in-place updates bump it)
    data_ptr: int  # blocks.data_ptr() then (new storage)
    dtype: torch.dtype
    blocks_t: Tensor  # (k, b, b) routed blocksᵀ in dtype (uniform weights folded in)
    rows: Tensor  # (k,)
    cols: Tensor  # (k,)
    wt: Tensor | None  # (k, B, 1, 1) per-example weights, or None
    slots: tuple  # torch.unique(rows, return_inverse=True)


class SparseBlockLinear(WorkingCopy, nn.Module):
    """Sparse block experts over a dense `nn.Linear` base."""

    def __init__(self, base_layer: nn.Linear, block_size: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.base_layer = base_layer
        self.grid = BlockGrid(int(base_layer.out_features), int(base_layer.in_features), int(block_size))
        device = self._base_device()
        b = self.grid.block_size
        self.blocks = nn.Parameter(torch.zeros(0, b, b, dtype=dtype, device=device))  # (k_l, b, b)
        self.register_buffer("local_ids", torch.zeros(0, dtype=torch.long, device=device))  # (k_l,)
        self.register_buffer("_rows", torch.zeros(0, dtype=torch.long, device=device), persistent=False)
        self.register_buffer("_cols", torch.zeros(0, dtype=torch.long, device=device), persistent=False)
        self._route: tuple[Tensor, Tensor | None] | None = None  # (positions (k,), weights (B, k) | None)
        self._route_index: _RouteIndex | None = None  # built once per route, see _routed_index
        self._inference: _InferencePlan | None = None  # per-route tensors of the no-grad path
        self._ragged_out = self.grid.out_features % self.grid.block_size != 0  # no in-place path then
        self.train_blocks: nn.Parameter | None = None  # (k_t, b, b) working copy while a task trains
        self._train_slot: Tensor | None = None  # (k_l,) index into train_blocks, -1 = not trained
        self._train_pos: Tensor | None = None  # (k_t,) stack positions of train_blocks, sorted

    # ---- HF compatibility: code that reads proj.weight / proj.bias sees the base's -------------
    @property
    def weight(self):
        return self.base_layer.weight

    @property
    def bias(self):
        return self.base_layer.bias

    @property
    def in_features(self) -> int:
        return self.grid.in_features

    @property
    def out_features(self) -> int:
        return self.grid.out_features

    def _base_device(self) -> torch.device:
        return self.base_layer.weight.device

    # ---- blocks -------------------------------------------------------------------------------
    @property
    def n_blocks(self) -> int:
        """k_l: allocated blocks in this layer."""
        return self.blocks.shape[0]

    def add_blocks(self, local_ids) -> Tensor:
        """Allocate zero-initialised blocks for local_ids not yet present; returns their positions.

        Replaces `self.blocks` by a new Parameter (old values kept bit-identical, positions kept):
        rebuild the optimizer afterwards.
        """
        ids = torch.as_tensor(local_ids, dtype=torch.long).reshape(-1).cpu()
        if self.train_blocks is not None:
            raise RuntimeError("add_blocks during begin_training/end_training: allocate before training starts")
        if ids.unique().numel() != ids.numel():
            raise ValueError("local_ids contain duplicates")
        rows, cols = self.grid.rows_cols(ids)  # validates range
        new = ~torch.isin(ids, self.local_ids.cpu())  # new blocks are appended in the given order
        ids, rows, cols = ids[new], rows[new], cols[new]
        start = self.n_blocks
        if ids.numel():
            dev, b = self.blocks.device, self.grid.block_size
            zeros = torch.zeros(ids.numel(), b, b, dtype=self.blocks.dtype, device=dev)
            self.blocks = nn.Parameter(torch.cat([self.blocks.detach(), zeros]), requires_grad=self.blocks.requires_grad)
            self.local_ids = torch.cat([self.local_ids, ids.to(dev)])
            self._rows = torch.cat([self._rows, rows.to(dev)])
            self._cols = torch.cat([self._cols, cols.to(dev)])
        return torch.arange(start, self.n_blocks)

    def positions(self, local_ids) -> Tensor:
        """Stack positions of local_ids (same order); ValueError if a block is not allocated."""
        ids = torch.as_tensor(local_ids, dtype=torch.long).reshape(-1)
        have = self.local_ids.cpu()
        match = ids[:, None] == have[None, :]  # (q, k_l)
        found = match.any(1)
        if not bool(found.all()):
            raise ValueError(f"blocks {ids[~found].tolist()} of this layer have no parameters; add_blocks first")
        return match.float().argmax(1)

    def compute_dtype(self, x: Tensor) -> torch.dtype:
        """dtype the delta for input x is computed in: autocast's on x's device while it is on, else
        the blocks' dtype (see the module doc)."""
        return autocast_dtype(x.device) or self.blocks.dtype

    # ---- route --------------------------------------------------------------------------------
    def set_route(self, positions: Tensor | None, weights: Tensor | None = None) -> None:
        """positions: (k,) stack positions that act (None or empty: base only); weights: None (all 1) or
        (B, k) per-example block weights. Positions are sorted so the summation order is canonical."""
        if positions is None or positions.numel() == 0:
            self.restore_route(None)
            return
        with torch.inference_mode(False):  # a route set under inference mode must still work in training
            positions = positions.to(torch.long).clone()
            order = torch.argsort(positions)
            positions = positions[order].to(self.blocks.device)
            if weights is not None:
                if weights.dim() != 2 or weights.shape[1] != order.numel():
                    raise ValueError(f"weights must be (B, {order.numel()}), got {tuple(weights.shape)}")
                weights = weights.clone()[:, order.to(weights.device)].to(device=self.blocks.device)
        self.restore_route((positions, weights))

    def get_route(self):
        return self._route

    def restore_route(self, route) -> None:
        """Put back a route returned by `get_route` (or None); drops the tensors cached for the old one."""
        self._route, self._route_index, self._inference = route, None, None

    def _routed_index(self) -> tuple[Tensor, Tensor]:
        """Block coordinates (rows, cols) of the current route, gathered once per route (positions never
        move; a new route, growth or a device move replaces the tensors this is keyed on). With a
        working copy, the route's `_read_plan` is cached alongside (begin/end_training drop the cache)."""
        cached = self._route_index
        if cached is None or cached.route is not self._route or cached.rows_key is not self._rows:
            pos = self._route[0]
            with torch.inference_mode(False):  # normal tensors: training may reuse a route cached in eval
                plan = self._read_plan(pos) if self.train_blocks is not None else None
                cached = _RouteIndex(self._route, self._rows, self._rows.index_select(0, pos),
                                     self._cols.index_select(0, pos), plan)
            self._route_index = cached
        return cached.rows, cached.cols

    def _inference_plan(self, dtype: torch.dtype) -> _InferencePlan:
        """Everything the no-grad path needs for the current route and compute dtype, built once
        (`_InferencePlan`: blocksᵀ (k, b, b) in dtype, rows, cols, weights (k, B, 1, 1) | None, row
        slots, and what it was built from). Reused while route, stack and dtype are
        unchanged: a new Parameter, new storage or an in-place update (seen by the version counter, as
        autograd checks its saved tensors) rebuilds it. Weights equal for every example (one expert for
        the whole batch) are folded into blocksᵀ (in the blocks' dtype, then cast). Holds a copy of the
        routed blocks (unless the route is the whole stack, unweighted, in its dtype) until the route
        changes or is cleared.
        """
        plan, blocks = self._inference, self.blocks
        if (plan is not None and plan.route is self._route and plan.rows_key is self._rows and plan.blocks is blocks
                and plan.version == blocks._version and plan.data_ptr == blocks.data_ptr() and plan.dtype == dtype):
            return plan
        (pos, w), (rows, cols) = self._route, self._routed_index()
        with torch.inference_mode(False):
            routed = blocks.detach() if pos.numel() == self.n_blocks else blocks.detach().index_select(0, pos)
            wt = None
            if w is not None and bool((w == w[:1]).all()):
                routed = routed * w[0].to(routed)[:, None, None]  # (k, b, b)
            elif w is not None:
                wt = w.t().to(dtype).contiguous()[:, :, None, None]  # (k, B, 1, 1)
            slots = torch.unique(rows, return_inverse=True)
        plan = _InferencePlan(self._route, self._rows, blocks, blocks._version, blocks.data_ptr(), dtype,
                              routed.to(dtype).transpose(1, 2), rows, cols, wt, slots)
        self._inference = plan
        return plan

    def _example_weights(self, w: Tensor, batch: int, dim: int) -> Tensor:
        """Per-example route weights repeated for a batch generate() expanded in place (beams, samples)."""
        if w.shape[dim] == batch:
            return w
        if batch % w.shape[dim]:
            raise ValueError(f"route has per-example weights for {w.shape[dim]} examples but the batch has "
                             f"{batch}; set the routing for this batch (num_return_sequences/beams "
                             "must be an integer multiple)")
        return w.repeat_interleave(batch // w.shape[dim], dim=dim)

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        result = self.base_layer(x, *args, **kwargs)  # (B, T, d_out), unchanged base output
        if self._route is None:
            return result
        if not (torch.is_grad_enabled() or self._ragged_out or self.train_blocks is not None) and result.is_contiguous():
            # inference: add into the fresh base output in place, with the per-route tensors built once
            plan = self._inference_plan(self.compute_dtype(x))
            blocks_t, rows, cols, wt, slots = plan.blocks_t, plan.rows, plan.cols, plan.wt, plan.slots
            if wt is not None and wt.shape[1] != x.shape[0]:
                wt = self._example_weights(wt, x.shape[0], dim=1)
            return delta_add_(result, x, blocks_t, rows, cols, self.grid, wt,
                               None if result.dtype == blocks_t.dtype else slots)
        pos, w = self._route
        rows, cols = self._routed_index()
        if self.train_blocks is not None:  # (k, b, b); grads reach the working copy
            blocks = self._read(pos, self._route_index.read_plan)
        elif pos.numel() == self.n_blocks:  # every block (positions sorted & unique → identity)
            blocks = self.blocks
        else:
            blocks = self.blocks.index_select(0, pos)  # (k, b, b); grads scatter back to the stack
        dtype = self.compute_dtype(x)
        if w is not None:
            w = self._example_weights(w, x.shape[0], dim=0).to(dtype)
        delta = block_delta(x.to(dtype), blocks.to(dtype), rows, cols, self.grid, w)  # (B, T, d_out) in dtype
        return result + delta.to(result.dtype)

    # ---- deployment -----------------------------------------------------------------------------
    def dense_delta(self, positions: Tensor) -> Tensor:
        """ΔW (out, in) of the given stack positions. Deployment / tests only, never in training."""
        pos = positions.to(self.blocks.device)
        return blocks_to_dense(self.read(pos).detach(), self._rows[pos], self._cols[pos], self.grid)

    def merged_base(self, positions: Tensor) -> nn.Module:
        """The base layer with ΔW of `positions` added to its weight in place (dense bases only)."""
        weight = self.base_layer.weight
        weight.data += self.dense_delta(positions).to(weight.dtype)
        return self.base_layer

    def extra_repr(self) -> str:
        g = self.grid
        return f"out={g.out_features}, in={g.in_features}, block_size={g.block_size}, blocks={self.n_blocks}"


_MOVED = {"SparseBlockLinear4bit": "seta.models.bnb", "keep_4bit_differentiable": "seta.models.loading",
          "wrap_linear": "seta.models.dispatch", "supported_linear": "seta.models.dispatch",
          "DISPATCHERS": "seta.models.dispatch"}


def __getattr__(name: str):
    """Names that lived here before the 4-bit layer, the dispatch and the bitsandbytes work-around
    got their own modules: still importable from `seta.models.layer`."""
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
