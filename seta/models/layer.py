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

Setting a route builds its `RoutePlan` (`seta.models.route_plan`: block coordinates of the routed
positions; with a working copy, how to read their blocks), rebuilt wherever an input changes under the
same route (growth, begin/end of a working copy, device and dtype moves, state-dict loads). `forward`
is the base output plus the plan's delta, computed one of two ways:
- no autograd (evaluation, `generate`), no working copy, b | d_out: added in place into the fresh base
  output (`seta.core.blocks.delta_add_`: gather → bmm → (weights) → index_add) from tensors the plan
  builds once per state of the stack (routed blocksᵀ in the compute dtype, per-example weights, row
  slots; in-place writes to the stack are seen by its version counter);
- else (training, ragged output edges, a working copy): `block_delta`, differentiable, out of place.
Both equal the dense reference base(x) + x ΔWᵀ (tests/models/test_layer_paths.py). Where a whole batch
has one route and the base is dense, `generate` folds the route into the base weight instead
(`seta.models.fold`); the layer then returns the base output alone.

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

import torch
from torch import Tensor, nn

from seta.core.blocks import BlockGrid, autocast_dtype, block_delta, blocks_to_dense, delta_add_
from seta.models.route_plan import RoutePlan
from seta.models.working_copy import WorkingCopy

__all__ = ["SparseBlockLinear"]


class SparseBlockLinear(WorkingCopy, nn.Module):
    """Sparse block experts over a dense `nn.Linear` base."""

    foldable = True  # the route can be folded into the base weight for generation (`seta.models.fold`)

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
        self._route_plan: RoutePlan | None = None  # the current route's plan; None: no route, base only
        self._ragged_out = self.grid.out_features % self.grid.block_size != 0  # no in-place path then
        self.register_parameter("train_blocks", None)  # (k_t, b, b) working copy while a task trains
        self._train_slot: Tensor | None = None  # (k_l,) index into train_blocks, -1 = not trained
        self._train_pos: Tensor | None = None  # (k_t,) stack positions of train_blocks, sorted
        self._folded: Tensor | None = None  # (k, b, b) W's blocks before `seta.models.fold` folded the route

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
            self._replan()  # new Parameter and coordinate buffers, same positions
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
        return None if self._route_plan is None else self._route_plan.route

    def restore_route(self, route) -> None:
        """Put back a route returned by `get_route` (or None): builds its plan, dropping the old one."""
        if self._folded is not None:
            raise RuntimeError("the route changed while folded into the base weight (seta.models.fold.folded): "
                               "change routes outside the `folded` block")
        if route is None:
            self._route_plan = None
            return
        pos = route[0]
        with torch.inference_mode(False):  # normal tensors: training may reuse a route set in eval
            copy_index = self._working_copy_index(pos) if self.train_blocks is not None else None  # syncs
            rows, cols = self._rows.index_select(0, pos), self._cols.index_select(0, pos)
            self._route_plan = RoutePlan(route, rows, cols, copy_index)

    def _replan(self) -> None:
        """Rebuild the current route's plan; called wherever its inputs change under the same route."""
        self.restore_route(self.get_route())

    def _apply(self, fn, *args, **kwargs):
        """Device and dtype moves (`to`, `cuda`, `half`, ...): the route follows the stack's device and
        its plan is rebuilt (new coordinate buffers; the stack's new storage keeps its version counter)."""
        super()._apply(fn, *args, **kwargs)
        route, dev = self.get_route(), self.blocks.device
        if route is not None and route[0].device != dev:
            route = tuple(None if t is None else t.to(dev) for t in route)
        self.restore_route(route)
        return self

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._replan()  # load_state_dict(assign=True) puts in new Parameters

    def _example_weights(self, w: Tensor | None, batch: int, dim: int, dtype: torch.dtype) -> Tensor | None:
        """Route weights in dtype, repeated for a batch generate() expanded in place (beams, samples)."""
        if w is None:
            return None
        if w.shape[dim] != batch:
            if batch % w.shape[dim]:
                raise ValueError(f"route has per-example weights for {w.shape[dim]} examples but the batch has "
                                 f"{batch}; set the routing for this batch (num_return_sequences/beams "
                                 "must be an integer multiple)")
            w = w.repeat_interleave(batch // w.shape[dim], dim=dim)
        return w if w.dtype == dtype else w.to(dtype)  # `.to` costs a dispatch even when it returns w

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        """base_layer(x) + the route's delta (the module doc)."""
        y = self.base_layer(x, *args, **kwargs)  # (B, T, d_out), the unchanged base output
        plan = self._route_plan
        if plan is None or self._route_in_base_weight():
            return y
        dtype = self.compute_dtype(x)
        if not (torch.is_grad_enabled() or self.train_blocks is not None or self._ragged_out) and y.is_contiguous():
            return self._add_delta_no_grad(y, x, plan, dtype)
        blocks = plan.select(self.blocks) if self.train_blocks is None else self._read(plan.positions, plan.copy_index)
        w = self._example_weights(plan.weights, x.shape[0], 0, dtype)  # (B, k) | None
        delta = block_delta(x.to(dtype), blocks.to(dtype), plan.rows, plan.cols, self.grid, w)  # (B, T, d_out)
        return y + delta.to(y.dtype)

    def _route_in_base_weight(self) -> bool:
        """Whether `seta.models.fold` folded the route into the base weight (the base output holds its
        delta then); training through a folded route is refused."""
        if self._folded is None:
            return False
        if torch.is_grad_enabled():
            raise RuntimeError("forward with gradients while the route is folded into the base weight: "
                               "train outside `seta.models.fold.folded`")
        return True

    def _add_delta_no_grad(self, y: Tensor, x: Tensor, plan: RoutePlan, dtype: torch.dtype) -> Tensor:
        """y += x ΔWᵀ in place (y contiguous, fresh from the base), from the plan's no-grad tensors."""
        ng = plan.no_grad_tensors(self.blocks, dtype)
        wt = self._example_weights(ng.wt, x.shape[0], 1, dtype)  # (k, B, 1, 1) | None
        slots = None if y.dtype == dtype else ng.slots  # sum per row block in dtype, round once
        return delta_add_(y, x, ng.blocks_t, plan.rows, plan.cols, self.grid, wt, slots)

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
