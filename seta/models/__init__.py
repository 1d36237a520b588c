"""seta.models: sparse block experts on Hugging Face causal LMs, the unified gate, probes, I/O.

    base = build_tiny_model("llama", vocab_size=...)          # or load_base_model(path, load_in_4bit=True)
    seta = attach_experts(base, ExpertConfig(block_size=16))  # experts after k-bit preparation
    scores = probe_block_sensitivity(seta, batches)           # (N,) over global block ids
    alloc = seta.allocate(task, scores, ratio=0.01, beta=0.1) # S_t, new blocks, gate output
    seta.set_task(task)                                       # train: only S_t's blocks get gradient
"""

from seta.models.gate import ROUTING_MODES, ExpandableGate, FeatureCache, Router
from seta.models.bnb import SparseBlockLinear4bit
from seta.models.dispatch import wrap_linear
from seta.models.layer import SparseBlockLinear
from seta.models.loading import (architecture_config, build_from_architecture, build_tiny_model,
                                 enable_gradient_checkpointing, load_base_model, load_tokenizer, max_positions,
                                 nf4_config, prepare_for_kbit_training)
from seta.models.model import CONFIG_NAME, DEFAULT_TARGETS, WEIGHTS_NAME, BlockAnchors, ExpertConfig, SetaModel, attach_experts, find_targets
from seta.models.probes import (allocate_by_sensitivity, default_loss, estimate_block_fisher, probe_block_sensitivity,
                                tensors_only)

__all__ = [
    "ROUTING_MODES", "ExpandableGate", "FeatureCache", "Router", "SparseBlockLinear", "SparseBlockLinear4bit",
    "wrap_linear",
    "architecture_config", "build_from_architecture", "build_tiny_model", "enable_gradient_checkpointing",
    "load_base_model", "load_tokenizer", "max_positions", "nf4_config", "prepare_for_kbit_training", "DEFAULT_TARGETS",
    "CONFIG_NAME", "WEIGHTS_NAME", "BlockAnchors", "ExpertConfig", "SetaModel", "attach_experts", "find_targets", "default_loss",
    "estimate_block_fisher", "probe_block_sensitivity", "allocate_by_sensitivity", "tensors_only",
]
