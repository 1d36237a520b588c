"""Continual-learning strategies, one file each, all on the protocol of ``base.Strategy``.

``build_strategy(name, model, tokenizer, sparse_config)`` makes any of ``STRATEGIES``; the SETA
ablations are SETA with one switch changed. Importing this package is cheap (no torch, no peft):
``STRATEGIES`` names the classes, which are imported when a strategy is built, so a command line
can check method names in milliseconds.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import import_module

# name -> ("module:Class" under seta.train.strategies, SparseConfig changes or None for no SparseConfig)
STRATEGIES = {
    "seta": ("seta:Seta", {}),
    "seqft-sparse": ("sparse:SparseBlocks", {}),
    "seq-lora": ("lora:SeqLoRA", None),
    "o-lora": ("lora:OLoRA", None),
    "ewc": ("ewc:EWC", {}),
    "replay": ("replay:Replay", {}),
    "lwf": ("lwf:LwF", {}),
    "independent": ("sparse:Independent", {}),
    "mtl": ("sparse:MTL", {}),
    "seta-no-anchor": ("seta:Seta", {"anchor_lambda": 0.0}),
    "seta-no-reuse": ("seta:Seta", {"beta": 0.0}),
    "seta-no-routing-reg": ("seta:Seta", {"gate": "no-reg"}),
    "seta-oracle": ("seta:Seta", {"routing": "oracle"}),
    "seta-raw": ("seta:Seta", {"allocation": "raw"}),
    "seta-soft": ("seta:Seta", {"routing": "soft"}),
}


def strategy_class(name: str):
    """The class behind method `name` (imported on first use)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(STRATEGIES)}")
    module, cls = STRATEGIES[name][0].split(":")
    return getattr(import_module(f"{__name__}.{module}"), cls)


def build_strategy(name: str, model, tokenizer, sparse=None):
    cls, changes = strategy_class(name), STRATEGIES[name][1]
    if changes is None:
        return cls(model, tokenizer)
    from seta.train.strategies.sparse import SparseConfig

    sparse = sparse or SparseConfig()
    if changes.get("gate") == "no-reg":
        changes = {**changes, "gate": replace(sparse.gate, pseudo=False, kl_weight=0.0, l2_weight=0.0)}
    strategy = cls(model, tokenizer, replace(sparse, **changes))
    strategy.name = name
    return strategy


def __getattr__(name: str):  # Strategy and SparseConfig, imported when first asked for
    if name == "Strategy":
        from seta.train.strategies.base import Strategy

        return Strategy
    if name == "SparseConfig":
        from seta.train.strategies.sparse import SparseConfig

        return SparseConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["STRATEGIES", "Strategy", "SparseConfig", "build_strategy", "strategy_class"]
