"""Saving, loading and merging a `SetaModel` (`save_pretrained` / `from_pretrained`, as peft does).

    <dir>/seta_config.json       format, version, ExpertConfig, layer shapes, ownership, gate config
    <dir>/seta_model.safetensors layers.<name>.blocks / .local_ids, router.*, anchors.*

A saved state round-trips exactly: blocks come back in their stack order, so every forward matches
bit for bit. `merge_and_unload` folds one expert into a dense base for deployment.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from seta.core.allocation import OwnershipRegistry
from seta.models.config import CONFIG_NAME, WEIGHTS_NAME, ExpertConfig
from seta.models.gate import Router
from seta.models.layer import SparseBlockLinear

if TYPE_CHECKING:
    from seta.models.model import SetaModel

__all__ = ["ExpertIO"]


class ExpertIO:
    """Mixin of `SetaModel`: merge for deployment, save and load."""

    # ---- deployment -----------------------------------------------------------------------------------
    @torch.no_grad()
    def merge_and_unload(self, global_ids) -> nn.Module:
        """Fold the expert global_ids into the base weights (dense bases only) and return the plain HF
        model. The SetaModel is unusable afterwards; the base weights are changed in place."""
        per = self.index.split(self._ids(global_ids))
        if any(type(self.layers[n]) is not SparseBlockLinear for n in per):  # check before changing anything
            raise ValueError("merge_and_unload needs a dense base; reload the base in bf16/fp32 to merge, "
                             "or keep the adapter and route with set_expert")
        modules = dict(self.model.named_modules())
        for name, layer in self.layers.items():
            pos = layer.positions(per[name]) if name in per else torch.zeros(0, dtype=torch.long)
            base = layer.merged_base(pos) if pos.numel() else layer.base_layer
            parent_name, _, child = name.rpartition(".")
            setattr(modules[parent_name] if parent_name else self.model, child, base)
        self.layers = {}
        return self.model

    # ---- save / load ----------------------------------------------------------------------------------
    def save_pretrained(self, directory) -> None:
        """<dir>/seta_config.json + <dir>/seta_model.safetensors (blocks, indices, ownership, gate,
        routing statistics, anchors and Fisher)."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg = {"format": "seta-sparse-block-experts", "version": 1, "expert_config": asdict(self.config),
               "base_model_type": getattr(getattr(self.model, "config", None), "model_type", None),
               "layers": {n: [l.grid.out_features, l.grid.in_features] for n, l in self.layers.items()},
               "registry": self.registry.to_dict(), "router": self.router.config_dict()}
        tensors = {}
        for name, layer in self.layers.items():
            if layer.n_blocks:
                tensors[f"layers.{name}.blocks"] = layer.blocks.detach()
                tensors[f"layers.{name}.local_ids"] = layer.local_ids
        tensors.update({f"router.{k}": v for k, v in self.router.tensors().items()})
        tensors.update({"anchors.ids": self.anchors.ids, "anchors.values": self.anchors.values,
                        "anchors.fisher": self.anchors.fisher, "anchors.count": self.anchors.count})
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(d / WEIGHTS_NAME))
        (d / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory) -> "SetaModel":
        """Attach experts to `model` (a fresh base of the same architecture) and load a saved state."""
        d = Path(directory)
        if not (d / CONFIG_NAME).is_file() or not (d / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{d} has no {CONFIG_NAME} + {WEIGHTS_NAME}; pass a SetaModel.save_pretrained directory")
        cfg = json.loads((d / CONFIG_NAME).read_text())
        seta = cls(model, ExpertConfig(**cfg["expert_config"]))
        seta.load_saved_state(d)
        return seta

    def load_saved_state(self, directory) -> None:
        """Load a `save_pretrained` state (blocks in their stack order, ownership, gate, anchors) into this
        model, which must have no blocks yet and the same target layers (e.g. one a strategy attached)."""
        from safetensors.torch import load_file

        d = Path(directory)
        cfg = json.loads((d / CONFIG_NAME).read_text())
        if ExpertConfig(**cfg["expert_config"]) != self.config:
            raise ValueError(f"the experts in {d} were attached with {cfg['expert_config']}, not with this model's "
                             f"{asdict(self.config)}")
        have = {n: [l.grid.out_features, l.grid.in_features] for n, l in self.layers.items()}
        if have != cfg["layers"]:
            diff = [n for n in set(have) | set(cfg["layers"]) if have.get(n) != cfg["layers"].get(n)]
            raise ValueError(f"the saved experts were trained on a base of another shape "
                             f"({cfg.get('base_model_type')}): layer {diff[0]!r} is {cfg['layers'].get(diff[0])} "
                             f"in the checkpoint but {have.get(diff[0])} here ({len(diff)} layers differ). "
                             "Load them onto the same base model they were trained on.")
        tensors = load_file(str(d / WEIGHTS_NAME))
        for name, layer in self.layers.items():
            if f"layers.{name}.blocks" in tensors:
                if layer.n_blocks:
                    raise ValueError(f"layer {name} already has blocks; load a saved state into a fresh model")
                layer.add_blocks(tensors[f"layers.{name}.local_ids"])  # same stack order
                with torch.no_grad():
                    layer.blocks.copy_(tensors[f"layers.{name}.blocks"].to(layer.blocks))
        self.registry = OwnershipRegistry.from_dict(cfg["registry"])
        router = Router.from_saved(cfg["router"], {k[7:]: v for k, v in tensors.items() if k.startswith("router.")})
        self.router = router.to(self.device)
        self.anchors.ids = tensors["anchors.ids"]
        self.anchors.values, self.anchors.fisher = tensors["anchors.values"], tensors["anchors.fisher"]
        self.anchors.count = tensors.get("anchors.count", torch.ones(self.anchors.ids.numel(), dtype=torch.long))
