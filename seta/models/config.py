"""How sparse block experts are attached: `ExpertConfig` (saved beside every checkpoint) and
`find_targets`, which resolves its `target_modules` patterns to the model's linear layers.

The saved file names of an adapter (`CONFIG_NAME`, `WEIGHTS_NAME`) and the KV-cache field name of
the installed transformers (`cache_name`) live here too: every other models module reads them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import torch
from torch import nn

from seta.models.layer import SparseBlockLinear
from seta.models.dispatch import supported_linear

__all__ = ["ExpertConfig", "find_targets", "DEFAULT_TARGETS", "CONFIG_NAME", "WEIGHTS_NAME", "DTYPES", "cache_name"]

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # Llama/Qwen3/Mistral
CONFIG_NAME, WEIGHTS_NAME = "seta_config.json", "seta_model.safetensors"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@functools.lru_cache(maxsize=None)
def cache_name() -> str:
    """The KV cache's name in model outputs and `generate` kwargs: 'cache' (transformers >= 5.24),
    formerly 'past_key_values'."""
    import dataclasses

    from transformers.modeling_outputs import BaseModelOutputWithPast

    return "cache" if "cache" in {f.name for f in dataclasses.fields(BaseModelOutputWithPast)} else "past_key_values"


@dataclass(frozen=True)
class ExpertConfig:
    """How sparse block experts are attached (saved as JSON next to every checkpoint)."""

    block_size: int = 256
    """b: side of a square block; edge blocks may be ragged. One default, 256: the paper's setting for the 7B/4B
    models the method is meant for; small models need a smaller side (16-64)."""
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    """Linear layers to adapt: a pattern matches a module whose name equals it, ends with '.<pattern>',
    or fully matches it as a regular expression. Every pattern must match at least one linear layer."""
    block_dtype: str = "float32"
    """dtype the trainable blocks are stored (master weights) and trained in ('float32', 'bfloat16',
    'float16'); the delta is computed in it, or in autocast's dtype inside a `torch.autocast` region."""
    gate_hidden: int = 0
    """Hidden width of the gate's MLP trunk; 0 = a linear gate on the normalised routing feature."""
    feature_shrinkage: float = 0.1
    """Covariance shrinkage towards the diagonal for pseudo-features and Mahalanobis distances."""
    diagonal_stats: bool = False
    """Keep only per-feature variances in the routing statistics (for very wide hidden states)."""

    def __post_init__(self):
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"block_size must be a positive int, got {self.block_size!r}")
        targets = (self.target_modules,) if isinstance(self.target_modules, str) else tuple(self.target_modules)
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise ValueError(f"target_modules must be non-empty strings, got {self.target_modules!r}")
        object.__setattr__(self, "target_modules", targets)
        if self.block_dtype not in DTYPES:
            raise ValueError(f"block_dtype must be one of {sorted(DTYPES)}, got {self.block_dtype!r}")
        if self.gate_hidden < 0:
            raise ValueError(f"gate_hidden must be >= 0, got {self.gate_hidden}")
        if not 0.0 <= self.feature_shrinkage <= 1.0:
            raise ValueError(f"feature_shrinkage must lie in [0, 1], got {self.feature_shrinkage}")


def _pattern_matches(pattern: str, name: str) -> bool:
    if name == pattern or name.endswith("." + pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def find_targets(model: nn.Module, patterns) -> list[str]:
    """Names of the linear layers matched by `patterns`, in module order; ValueError listing the
    existing linear layer names when a pattern matches none."""
    linear = [n for n, m in model.named_modules() if supported_linear(m)]
    if any(isinstance(m, SparseBlockLinear) for m in model.modules()):
        raise ValueError("this model already has sparse block experts attached; attach to a fresh base model")
    unmatched = [p for p in patterns if not any(_pattern_matches(p, n) for n in linear)]
    if unmatched:
        suffixes = sorted({n.rsplit(".", 1)[-1] for n in linear})
        raise ValueError(f"target_modules {unmatched} match no linear layer of {type(model).__name__}. "
                         f"Linear layer names end in: {suffixes}; e.g. {linear[:4]}. Set ExpertConfig.target_modules.")
    return [n for n in linear if any(_pattern_matches(p, n) for p in patterns)]
