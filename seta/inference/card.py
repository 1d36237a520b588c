"""The adapter card: what makes an adapter folder self-describing (`seta_adapter.json`).

    ADAPTER/seta_config.json          experts, layers, ownership, gate config   (SetaModel.save_pretrained)
    ADAPTER/seta_model.safetensors    blocks, gate, routing statistics, anchors
    ADAPTER/seta_adapter.json         this card:
        method, preset
        base: {kind ("tiny" | "hf"), model (absolute path or hub id), tokenizer, dtype, load_in_4bit,
               model_type, config_hash (the HF config), weights_hash (a strided sample of the weights)}
        tasks: [{name, metric, max_new_tokens (the answer budget from its training answers),
                 stop (its answer delimiter, or null), source}]
        train_config, sparse_config (the blocks), seta_config (SETA's own, with the gate's), prompt_cap
        (cards written before the split hold one flat sparse_config: `card_configs` reads both)
        sha256: {"seta_config.json": hex, "seta_model.safetensors": hex}, checked on load (cards without
        it are loaded after the other checks of `seta.inference.adapter_files`)

A task's `source` says where its data came from ({"data_dir": absolute path} or {"synthetic": kwargs,
"seed": s}), so that `seta train --from ADAPTER` can continue the stream and score the earlier tasks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from seta.inference.adapter_files import _shown, check_card, check_routing, read_json_file

CARD_NAME = "seta_adapter.json"
CARD_FORMAT = "seta-adapter"
CONFIG_NAME, WEIGHTS_NAME = "seta_config.json", "seta_model.safetensors"  # = seta.models' (tested); no torch here


def base_hashes(model) -> dict:
    """{"config_hash", "weights_hash"} of the base model: the same before and after experts are attached
    (adapter parameters are skipped, `.base_layer` is dropped from the names)."""
    from seta.train.fingerprint import ADAPTER_MARKERS, _hf_config, _sample_bytes

    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if any(m in name for m in ADAPTER_MARKERS):
            continue
        name = name.replace(".base_layer.", ".")
        h.update(f"{name}:{tuple(p.shape)}:{p.dtype};".encode())
        if p.device.type != "meta" and p.numel():
            h.update(_sample_bytes(p))
    config = hashlib.sha256(json.dumps(_hf_config(model), sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"config_hash": config, "weights_hash": h.hexdigest()[:16]}


def write_card(directory, card: dict) -> Path:
    """The card of the adapter saved in `directory`, with the sha256 of its two files."""
    from seta.inference.adapter_files import files_sha256

    path = Path(directory) / CARD_NAME
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps({"format": CARD_FORMAT, "version": 1, **card, "sha256": files_sha256(directory)},
                                  indent=1, default=str))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def has_gate(card: dict) -> bool:
    """Whether the card's method routes through a gate (SETA and its ablations); no torch."""
    from seta.train.strategies import STRATEGIES

    return STRATEGIES[card["method"]][0] == "seta:Seta"


def read_card(directory) -> dict:
    """The card of an adapter folder; FileNotFoundError / ValueError that say what the folder is instead."""
    d = Path(directory)
    if not d.exists():
        raise FileNotFoundError(f"adapter folder {d} does not exist")
    if not d.is_dir():
        raise ValueError(f"{d} is a file, not an adapter folder")
    if not (d / CARD_NAME).is_file():
        what = ("a SETA adapter without a card (written before adapters described themselves, or by another "
                "method); retrain it" if (d / CONFIG_NAME).is_file() else "not a SETA adapter folder")
        raise ValueError(f"{d} is {what}: it has no {CARD_NAME} (an adapter folder is e.g. "
                         "results/tiny/seta/seed0/adapter)")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (d / name).is_file():
            raise ValueError(f"{d} is an incomplete adapter folder: {name} is missing")
    card = read_json_file(d / CARD_NAME, "card")
    if card.get("format") != CARD_FORMAT:
        raise ValueError(f"{d / CARD_NAME} is not a SETA adapter card (format {_shown(card.get('format'))})")
    if card.get("base") is None:
        raise ValueError(f"{d} does not record its base model; retrain it with `seta train` or `seta run`")
    check_card(card, d / CARD_NAME)
    if has_gate(card):
        check_routing(_split_card_configs(card)[1], d / CARD_NAME)
    return card


def check_base(card: dict, model, where) -> None:
    """ValueError naming both hashes unless `model` is the base the adapter was trained on."""
    have, want = base_hashes(model), card["base"]
    for key, what in (("config_hash", "architecture config"), ("weights_hash", "weights")):
        if want.get(key) and have[key] != want[key]:
            raise ValueError(f"{where} was trained on another base model: its {what} hash is {want[key]} in the "
                             f"adapter card but {have[key]} for the base given ({card['base'].get('model')} "
                             "recorded); load it onto the base it was trained on")


# ---- the settings an adapter was trained with -------------------------------------------------------
def _split_card_configs(card: dict) -> tuple[dict, dict]:
    """(sparse_config, seta_config) dicts of a card; a card from before the split has one flat sparse_config,
    whose SETA fields are taken out of it by name."""
    sparse = dict(card["sparse_config"])
    if "seta_config" in card:
        return sparse, dict(card["seta_config"])
    seta_fields = ("beta", "anchor_lambda", "routing", "soft_k", "null_expert", "null_quantile", "gate")
    seta = {k: sparse.pop(k) for k in seta_fields if k in sparse}
    for k in ("fisher_gamma", "lwf_alpha", "lwf_temperature"):  # EWC's and LwF's: not SETA's
        sparse.pop(k, None)
    return sparse, seta


def card_routing(card: dict) -> dict | None:
    """{"mode", "soft_k", "null_expert"}: how the adapter routes at inference (no torch); None for a method
    without a gate (the sparse-block baselines)."""
    if not has_gate(card):
        return None
    seta = _split_card_configs(card)[1]
    return {"mode": seta["routing"], "soft_k": int(seta["soft_k"]), "null_expert": bool(seta["null_expert"])}


def card_configs(card: dict, where=CARD_NAME):
    """(SparseConfig, SetaOwnConfig) the adapter was trained with (ValueError naming `where` for a bad field)."""
    from seta.api import SetaOwnConfig
    from seta.train.strategies.sparse import SparseConfig

    from seta.inference.adapter_files import build_config

    sparse, seta = _split_card_configs(card)
    return build_config(SparseConfig, sparse, where, "sparse_config"), build_config(SetaOwnConfig, seta, where, "seta_config")


# ---- the base and tokenizer an adapter names ------------------------------------------------------
def load_card_tokenizer(card: dict):
    from seta.models import load_tokenizer

    return load_tokenizer(card["base"]["tokenizer"])


def load_base_from_card(card: dict, base=None, device_map=None):
    """A fresh copy of the adapter's base, loaded the way training loaded it. base: another path or id."""
    import torch

    from seta.models import load_base_model

    src = card["base"]
    name = str(base) if base is not None else src["model"]
    if src["kind"] == "tiny" and base is None and not Path(name).is_dir():
        raise FileNotFoundError(f"the adapter's tiny base {name} no longer exists (it is built by `seta run` / "
                                "`seta train` under <out>/../.cache); rerun training, or pass the base with --base")
    if device_map is None:
        device_map = "auto" if torch.cuda.is_available() and src["kind"] == "hf" else None
    return load_base_model(name, load_in_4bit=bool(src.get("load_in_4bit")), dtype=src.get("dtype", "bfloat16"),
                           device_map=device_map)


def base_factory_from_card(card: dict):
    def factory():
        return load_base_from_card(card)

    factory.source = {k: v for k, v in card["base"].items() if k not in ("config_hash", "weights_hash", "model_type")}
    return factory
