"""Which adapter class wraps which linear layer: an ordered dispatch, first match wins, the plain
default last (bitsandbytes' Linear4bit subclasses nn.Linear), as peft dispatches its LoRA layers."""

from __future__ import annotations

import torch
from torch import nn

from seta.models.bnb import dispatch_bnb_4bit
from seta.models.layer import SparseBlockLinear

__all__ = ["DISPATCHERS", "supported_linear", "wrap_linear"]


def _dispatch_default(base: nn.Module, **kw):
    return SparseBlockLinear(base, **kw) if isinstance(base, nn.Linear) else None


DISPATCHERS = [dispatch_bnb_4bit, _dispatch_default]


def supported_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and not isinstance(module, SparseBlockLinear)


def wrap_linear(base: nn.Module, block_size: int, dtype: torch.dtype = torch.float32) -> SparseBlockLinear:
    """Wrap a linear layer in the first matching adapter class; ValueError for anything else."""
    for dispatch in DISPATCHERS:
        layer = dispatch(base, block_size=block_size, dtype=dtype)
        if layer is not None:
            return layer
    raise ValueError(f"cannot attach sparse block experts to {type(base).__name__}: only nn.Linear and "
                     "bitsandbytes Linear4bit are supported; narrow target_modules to linear projections")
