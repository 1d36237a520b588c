"""A saved adapter without its base in memory: `merge_adapter` (a dense HF checkpoint, base + one
task's expert) and `adapter_info` (what the adapter holds, read from its files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from seta.inference.adapter_files import check_adapter
from seta.inference.card import card_routing, check_base, has_gate, load_base_from_card, load_card_tokenizer, read_card

__all__ = ["merge_adapter", "adapter_info"]


def merge_adapter(adapter_dir, task: str, out_dir) -> Path:
    """A dense HF checkpoint in out_dir: the adapter's base with `task`'s expert folded into its weights
    (W + Δ_{S_task}), loadable by plain `transformers`, equal in outputs to SETA with `task` routed.

    A fresh copy of the base is loaded for it: the adapter folder, and any model loaded from it, are left
    untouched. Dense bases only: a 4-bit base cannot hold W + Δ exactly (ValueError). SETA adapters only: a
    method without a gate (a sparse-block baseline) has no per-task expert to fold in (ValueError). The
    adapter's files are checked before the base is loaded; a failed write leaves no out_dir behind."""
    from seta.models import SetaModel

    card = read_card(adapter_dir)
    if not has_gate(card):
        raise ValueError(f"cannot merge {adapter_dir}: it is an adapter of {card['method']}, which has no gate and "
                         "deploys all its blocks together, not one expert per task; merge SETA adapters only")
    names = [t["name"] for t in card["tasks"]]
    if task not in names:
        raise ValueError(f"unknown task {task!r}; the adapter has: {', '.join(names)}")
    if card["base"].get("load_in_4bit"):
        raise ValueError(f"cannot merge {adapter_dir}: its base is 4-bit (NF4), whose weights cannot hold W + Δ "
                         "exactly; keep the adapter and route with `seta generate --task`, or retrain on a dense base")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not an empty folder; choose a new folder")
    check_adapter(adapter_dir, card)
    model = load_base_from_card(card)
    check_base(card, model, adapter_dir)
    seta = SetaModel.from_pretrained(model, adapter_dir)
    t = names.index(task)
    dense = seta.merge_and_unload(seta.registry.expert(t))
    existed = out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        dense.save_pretrained(out)
        load_card_tokenizer(card).save_pretrained(out)
        (out / "seta_merge.json").write_text(json.dumps(
            {"adapter": str(Path(adapter_dir).resolve()), "task": task, "blocks": int(seta.registry.expert(t).numel()),
             "base": card["base"]}, indent=1))
    except BaseException:  # a full disk, Ctrl-C: no half-written checkpoint is left to be mistaken for one
        if existed:
            for p in out.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        else:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return out


def adapter_info(adapter_dir) -> dict:
    """What an adapter holds, read from its files (no base model is loaded): tasks, blocks per task (unique
    to it / shared with other tasks), growth |∪S_j| / Σ|S_j|, routing statistics of the gate, and, when the
    training run's result.json sits next to the folder, the routing accuracy measured in training."""
    from safetensors import safe_open

    from seta.core.allocation import OwnershipRegistry
    from seta.models import CONFIG_NAME, WEIGHTS_NAME, Router

    d = Path(adapter_dir)
    card = read_card(d)
    check_adapter(d, card)
    cfg = json.loads((d / CONFIG_NAME).read_text())
    reg = OwnershipRegistry.from_dict(cfg["registry"])
    with safe_open(str(d / WEIGHTS_NAME), framework="pt") as f:
        router = Router.from_saved(cfg["router"], {k[7:]: f.get_tensor(k) for k in f.keys() if k.startswith("router.")})
    counts = reg.owner_counts()
    rows = []
    for t, entry in enumerate(card["tasks"]):
        s = reg.expert(t)
        unique = int((counts[s] == 1).sum())
        stats = router.stats.get(t)
        rows.append({"task": entry["name"], "metric": entry["metric"], "blocks": int(s.numel()), "unique": unique,
                     "shared": int(s.numel()) - unique, "max_new_tokens": entry["max_new_tokens"],
                     "features_seen": None if stats is None else int(stats.n),
                     "null_threshold": router.thresholds.get(t)})
    info = {"adapter": str(d), "method": card["method"], "preset": card.get("preset"), "base": card["base"],
            "tasks": rows, "block_size": cfg["expert_config"]["block_size"], "blocks_total": reg.n_blocks,
            "blocks_allocated": int(reg.allocated().numel()), "blocks_shared": int(reg.shared().numel()),
            "sum_of_experts": sum(r["blocks"] for r in rows), "growth_ratio": reg.growth_ratio(),
            "routing": card_routing(card)}
    result = d.parent / "result.json"
    if result.is_file():
        try:
            r = json.loads(result.read_text())
            info["routing"].update(train_routing_acc=r.get("routing_acc"), train_null_routed=r.get("extra", {}).get("null_routed"))
        except ValueError:
            pass
    return info
