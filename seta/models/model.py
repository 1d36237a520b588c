"""SETA on a Hugging Face causal LM: attach sparse block experts, route them, save and load.

    y_l = W_l x + Σ_j P_{n,j} Δ_{S_j,l} x          for every target layer l and example n

`SetaModel` is a small facade: it wraps the target layers (`seta.models.dispatch.wrap_linear`) and
holds the state, the ownership map (`registry`), the gate with its feature statistics (`router`) and
the anchors and Fisher of finished tasks (`anchors`), so one `save_pretrained` holds everything needed
to evaluate or to continue training. What it does with that state lives in focused modules:

    seta.models.config   ExpertConfig, find_targets, file names
    seta.models.store    blocks by global id, Split-on-Share `allocate`, working copy, anchors
    seta.models.routing  set_expert / set_routing / clear_route, routing features, route_batch, generate
    seta.models.io       save_pretrained / from_pretrained / load_saved_state, merge_and_unload

Routing is state on the model, not a forward kwarg (see `seta.models.routing`).
"""

from __future__ import annotations

import torch
from torch import nn

from seta.core.allocation import OwnershipRegistry
from seta.core.anchoring import BlockAnchors
from seta.core.blocks import BlockIndex
from seta.models.config import CONFIG_NAME, DEFAULT_TARGETS, DTYPES, WEIGHTS_NAME, ExpertConfig, find_targets
from seta.models.dispatch import wrap_linear
from seta.models.gate import Router
from seta.models.io import ExpertIO
from seta.models.layer import SparseBlockLinear
from seta.models.loading import keep_4bit_differentiable
from seta.models.routing import Routing
from seta.models.store import BlockStore

__all__ = ["ExpertConfig", "SetaModel", "attach_experts", "BlockAnchors", "DEFAULT_TARGETS", "CONFIG_NAME",
           "WEIGHTS_NAME", "find_targets"]


class SetaModel(BlockStore, Routing, ExpertIO, nn.Module):
    """An HF causal LM with sparse block experts on its target linear layers, plus the gate.

    Blocks by id, allocation and the working copy: `BlockStore` (seta.models.store); routes and
    gate routing: `Routing` (seta.models.routing); save / load / merge: `ExpertIO` (seta.models.io).
    """

    def __init__(self, model: nn.Module, config: ExpertConfig | None = None):
        super().__init__()
        config = config or ExpertConfig()
        names = find_targets(model, config.target_modules)
        for p in model.parameters():  # base frozen (k-bit preparation, if any, must come first)
            p.requires_grad_(False)
        keep_4bit_differentiable(model)
        modules = dict(model.named_modules())
        self.layers: dict[str, SparseBlockLinear] = {}
        for name in names:
            parent_name, _, child = name.rpartition(".")
            layer = wrap_linear(modules[name], config.block_size, DTYPES[config.block_dtype])
            setattr(modules[parent_name] if parent_name else model, child, layer)
            self.layers[name] = layer
        self.model = model
        self.config = config
        self.index = BlockIndex({n: l.grid for n, l in self.layers.items()})
        self.registry = OwnershipRegistry(self.index.n_blocks)
        emb = model.get_input_embeddings()
        self.router = Router(emb.embedding_dim, config.gate_hidden, config.feature_shrinkage,
                             config.diagonal_stats).to(emb.weight.device)
        self.anchors = BlockAnchors(config.block_size)

    # ---- HF passthrough -----------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device


def attach_experts(model: nn.Module, config: ExpertConfig | None = None) -> SetaModel:
    """Wrap the target linear layers of `model` (in place) and return the SetaModel. Do any k-bit
    preparation first (`seta.models.loading.prepare_for_kbit_training`)."""
    return SetaModel(model, config)
