"""Sparse block experts over a bitsandbytes 4-bit base (kept apart, as peft keeps `bnb.py`).

    y = Linear4bit(x) + Σ_{i routed} w_{n,i} · scatter_rows_i(x[..., cols_i] @ blocks[i]ᵀ)

The packed NF4 weight is never dequantised or touched: everything but merging is the dense layer's
(`seta.models.layer.SparseBlockLinear`). `dispatch_bnb_4bit` is the first entry of the ordered
dispatch in `seta.models.dispatch`; without bitsandbytes installed it matches nothing.
"""

from __future__ import annotations

from torch import Tensor, nn

from seta.models.layer import SparseBlockLinear

__all__ = ["SparseBlockLinear4bit", "dispatch_bnb_4bit"]


class SparseBlockLinear4bit(SparseBlockLinear):
    """Sparse block experts over a bitsandbytes `Linear4bit` (NF4) base: the packed base weight is
    never dequantised or touched; in/out features come from the layer's attributes."""

    foldable = False  # the packed weight cannot take ΔW: generation keeps the delta path

    def merged_base(self, positions: Tensor) -> nn.Module:
        raise ValueError("merge_expert needs a dense base; reload the base in bf16/fp32 to merge, "
                         "or keep the adapter and route with set_expert")


def dispatch_bnb_4bit(base: nn.Module, **kw):
    try:
        import bitsandbytes as bnb
    except ImportError:
        return None
    return SparseBlockLinear4bit(base, **kw) if isinstance(base, bnb.nn.Linear4bit) else None
