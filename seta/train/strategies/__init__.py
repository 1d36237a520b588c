"""Continual-learning strategies, one file each, all on the protocol of ``base.Strategy``.

``build_strategy(name, model, tokenizer, sparse_config)`` makes any of ``STRATEGIES``; the SETA
ablations are SETA with one switch changed.
"""

from __future__ import annotations

from dataclasses import replace

from seta.train.strategies.base import Strategy
from seta.train.strategies.ewc import EWC
from seta.train.strategies.lora import OLoRA, SeqLoRA
from seta.train.strategies.lwf import LwF
from seta.train.strategies.replay import Replay
from seta.train.strategies.seta import Seta
from seta.train.strategies.sparse import MTL, Independent, SparseBlocks, SparseConfig

# name -> (class, SparseConfig changes)
STRATEGIES = {
    "seta": (Seta, {}),
    "seqft-sparse": (SparseBlocks, {}),
    "seq-lora": (SeqLoRA, None),
    "o-lora": (OLoRA, None),
    "ewc": (EWC, {}),
    "replay": (Replay, {}),
    "lwf": (LwF, {}),
    "independent": (Independent, {}),
    "mtl": (MTL, {}),
    "seta-no-anchor": (Seta, {"anchor_lambda": 0.0}),
    "seta-no-reuse": (Seta, {"beta": 0.0}),
    "seta-no-routing-reg": (Seta, {"gate": "no-reg"}),
    "seta-oracle": (Seta, {"routing": "oracle"}),
    "seta-raw": (Seta, {"allocation": "raw"}),
    "seta-soft": (Seta, {"routing": "soft"}),
}


def build_strategy(name: str, model, tokenizer, sparse: SparseConfig | None = None) -> Strategy:
    if name not in STRATEGIES:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(STRATEGIES)}")
    cls, changes = STRATEGIES[name]
    if changes is None:
        return cls(model, tokenizer)
    sparse = sparse or SparseConfig()
    if changes.get("gate") == "no-reg":
        changes = {**changes, "gate": replace(sparse.gate, pseudo=False, kl_weight=0.0, l2_weight=0.0)}
    strategy = cls(model, tokenizer, replace(sparse, **changes))
    strategy.name = name
    return strategy


__all__ = ["STRATEGIES", "Strategy", "SparseConfig", "build_strategy"]
