"""Continual-learning strategies, one file each, all on the protocol of ``base.Strategy``.

``build_strategy(name, model, tokenizer, sparse_config, seta=..., ewc=..., lwf=...)`` makes any of
``STRATEGIES``; the SETA ablations are SETA with one switch changed. Importing this package is cheap (no torch, no peft):
``STRATEGIES`` names the classes, which are imported when a strategy is built, so a command line
can check method names in milliseconds.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import import_module

# name -> ("module:Class" under seta.train.strategies, {section: field changes} or None for a method without
# sparse blocks). Sections: "sparse" (SparseConfig) and the method's own ("seta": SetaOwnConfig, ...).
STRATEGIES = {
    "seta": ("seta:Seta", {}),
    "seqft-sparse": ("sparse:SparseBlocks", {}),
    "seq-lora": ("lora:SeqLoRA", None),
    "o-lora": ("lora:OLoRA", None),
    "arrow": ("arrow:Arrow", None),
    "osf": ("osf:OSF", None),
    "ewc": ("ewc:EWC", {}),
    "replay": ("replay:Replay", {}),
    "lwf": ("lwf:LwF", {}),
    "independent": ("sparse:Independent", {}),
    "mtl": ("sparse:MTL", {}),
    "seta-no-anchor": ("seta:Seta", {"seta": {"anchor_lambda": 0.0}}),
    "seta-no-reuse": ("seta:Seta", {"seta": {"beta": 0.0}}),
    "seta-no-routing-reg": ("seta:Seta", {"seta": {"gate": "no-reg"}}),
    "seta-oracle": ("seta:Seta", {"seta": {"routing": "oracle"}}),
    "seta-raw": ("seta:Seta", {"sparse": {"allocation": "raw"}}),
    "seta-soft": ("seta:Seta", {"seta": {"routing": "soft"}}),
}


def strategy_class(name: str):
    """The class behind method `name` (imported on first use)."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(STRATEGIES)}")
    module, cls = STRATEGIES[name][0].split(":")
    return getattr(import_module(f"{__name__}.{module}"), cls)


def build_strategy(name: str, model, tokenizer, sparse=None, **own):
    """Method `name` on `model`. sparse: the `SparseConfig` of the sparse-block methods (default if None);
    own: the methods' own configs by section (``seta=SetaOwnConfig(...)``, ``ewc=EWCConfig(...)``,
    ``lwf=LwFConfig(...)``): each method takes its own and ignores the others'. The ablations' changes
    (STRATEGIES) are applied on top."""
    cls, changes = strategy_class(name), STRATEGIES[name][1]
    unknown = sorted(set(own) - set(OWN_CONFIGS))
    if unknown:
        raise TypeError(f"build_strategy: unknown config section(s) {unknown}; known: {', '.join(OWN_CONFIGS)}")
    if changes is None:
        return cls(model, tokenizer)
    from seta.train.strategies.sparse import SparseConfig

    sparse = replace(sparse or SparseConfig(), **changes.get("sparse", {}))
    section = cls.config_section
    config = None
    if section is not None:
        config = own.get(section) or _own_class(section)()
        mine = dict(changes.get(section, {}))
        if mine.get("gate") == "no-reg":
            mine["gate"] = replace(config.gate, pseudo=False, kl_weight=0.0, l2_weight=0.0)
        config = replace(config, **mine)
    strategy = cls(model, tokenizer, sparse, config)
    strategy.name = name
    return strategy


# section -> "module:Class" of the methods' own configs (imported on first use)
OWN_CONFIGS = {"seta": "seta:SetaOwnConfig", "ewc": "ewc:EWCConfig", "lwf": "lwf:LwFConfig"}
_LAZY = {"Strategy": "base:Strategy", "SparseConfig": "sparse:SparseConfig", "SetaOwnConfig": "seta:SetaOwnConfig",
         "EWCConfig": "ewc:EWCConfig", "LwFConfig": "lwf:LwFConfig"}


def _own_class(section: str):
    module, cls = OWN_CONFIGS[section].split(":")
    return getattr(import_module(f"{__name__}.{module}"), cls)


def __getattr__(name: str):  # Strategy and the config classes, imported when first asked for
    if name in _LAZY:
        module, cls = _LAZY[name].split(":")
        return getattr(import_module(f"{__name__}.{module}"), cls)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["STRATEGIES", "OWN_CONFIGS", "Strategy", "SparseConfig", "SetaOwnConfig", "EWCConfig", "LwFConfig",
           "build_strategy", "strategy_class"]
