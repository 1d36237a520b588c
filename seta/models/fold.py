"""Generation with the route folded into the base weights (dense fp32/fp64 bases): the fast path.

    W'_l = W_l + Σ_{i routed} w_i · scatter(blocks[i] → block (rows_i, cols_i))      y = x W'_lᵀ (+ bias)

When every example of a batch has the same route (one expert, or one mixture, for the whole batch),
the routed layer y = W x + ΔW x is the dense layer W' = W + ΔW, so decoding costs what the base's
does: `folded(model)` adds each eligible layer's routed blocks into its base weight for the duration
of a `generate`, and the layer's forward then returns the base output alone. Equal to the delta path
up to floating-point rounding ((W + ΔW) x vs W x + ΔW x, both in the weight's dtype); greedy tokens
are held equal in tests/models/test_fold.py.

Restored exactly: the touched b × b blocks of W are copied before the fold and written back after
(also when generation raises), so W is bit-identical afterwards.

A layer is left on the delta path (not folded) when: its base is not a dense fp32/fp64 weight
(NF4 packs its weight; adding a small ΔW into bf16/fp16 weights would round most of it away); its
route has per-example weights that differ between examples (a mixed batch: W' would differ per row);
the grid is ragged (out or in features not a multiple of b); a working copy is training; autocast is
on; its weight is shared with another parameter (tied weights: folding would change both); or the
weight is offloaded (on the meta device, or the base layer carries an accelerate hook that loads the
weight for each forward: the fold would change a placeholder, not the weight that computes).
"""

from __future__ import annotations

import contextlib
from collections import Counter

import torch
from torch import Tensor

from seta.core.blocks import autocast_dtype

__all__ = ["folded", "fold_layer", "unfold_layer", "can_fold"]

FOLD_DTYPES = (torch.float32, torch.float64)


def _weight_blocks(layer) -> Tensor:
    """(R, C, b, b) view of the base weight (out, in) by b × b block: [r, c] is rows r·b…, cols c·b…."""
    g, b = layer.grid, layer.grid.block_size
    return layer.base_layer.weight.detach().view(g.n_rows, b, g.n_cols, b).transpose(1, 2)


def can_fold(layer, shared: Counter | None = None) -> bool:
    """Whether `fold_layer` applies to this layer's current route (see the module doc)."""
    plan = layer._route_plan
    if plan is None or not getattr(layer, "foldable", False) or layer.train_blocks is not None \
            or layer._folded is not None:
        return False
    w = layer.base_layer.weight
    g = layer.grid
    if w.dtype not in FOLD_DTYPES or not w.is_contiguous() or autocast_dtype(w.device) is not None:
        return False
    if w.device.type == "meta" or hasattr(layer.base_layer, "_hf_hook"):
        return False  # offloaded (accelerate loads the weight per forward): a fold would not reach it
    if g.out_features % g.block_size or g.in_features % g.block_size:
        return False
    if shared is not None and shared[w.data_ptr()] > 1:
        return False
    weights = plan.weights  # (B, k) | None
    return weights is None or bool((weights == weights[:1]).all())


@torch.no_grad()
def fold_layer(layer) -> None:
    """W ← W + ΔW of the layer's route (weights of the first example: all rows are equal); the
    layer's forward returns the base output alone until `unfold_layer`."""
    plan = layer._route_plan
    with torch.inference_mode(False):  # the saved blocks must be normal tensors
        wv = _weight_blocks(layer)  # (R, C, b, b) view
        blocks = plan.select(layer.blocks.detach())  # (k, b, b)
        if plan.weights is not None:
            blocks = blocks * plan.weights[0].to(blocks)[:, None, None]
        saved = wv[plan.rows, plan.cols].clone()  # (k, b, b) original blocks of W
        wv[plan.rows, plan.cols] = saved + blocks.to(saved.dtype)
    layer._folded = saved


@torch.no_grad()
def unfold_layer(layer) -> None:
    """Write the saved blocks of W back (bit-exact) and put the layer on its delta path again."""
    saved, plan = layer._folded, layer._route_plan
    with torch.inference_mode(False):
        wv = _weight_blocks(layer)
        wv[plan.rows, plan.cols] = saved
    layer._folded = None


def _shared_weights(module) -> Counter:
    """How many parameter names point at each storage (tied weights count twice)."""
    return Counter(p.data_ptr() for _, p in module.named_parameters(remove_duplicate=False))


@contextlib.contextmanager
def folded(model):
    """Fold every eligible layer of a `SetaModel`'s current route into its base weight, for a
    `generate` (no gradients inside); yields the number of layers folded. The route must not change
    inside (`set_route` raises while a layer is folded)."""
    shared = _shared_weights(model.model)
    layers = [layer for layer in model.layers.values() if can_fold(layer, shared)]
    done = []
    try:
        for layer in layers:
            fold_layer(layer)
            done.append(layer)
        yield len(done)
    finally:
        for layer in done:
            unfold_layer(layer)
