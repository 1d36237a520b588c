"""One task's SETA expert as a standard peft adapter folder (SHiRA), for peft's own tooling.

    export_adapter("results/tiny/seta/seed0/adapter", "FOMC", "deploy/fomc-peft")   # from a saved adapter
    export_expert(seta_model, task=1, out_dir="deploy/t1")                           # from a SetaModel in memory

    # anywhere, without seta:
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), "deploy/fomc-peft")

SHiRA (peft's `ShiraConfig`) stores a sparse update of each target weight as values plus (row, col) indices,

    W' = W + Σ_j values_j · e_{rows_j} e_{cols_j}ᵀ          (peft: W + sparse_coo(indices, values))

and the task's expert is exactly such an update: every element of every block of S_task in a layer,
Δ_l = scatter(blocks of S_task ∩ layer l). peft gives every target layer r·(out + in) entries, one r for
all of them, so r = max_l ⌈n_l / (out_l + in_l)⌉ and a layer with fewer block elements gets zero-valued
entries at positions outside its blocks (they add nothing). Targets: the layers holding the task's
blocks, by full module name. The folder is adapter_config.json + adapter_model.safetensors (peft's
names and keys) + seta_export.json (where it came from). Dense bases only: SHiRA adds into the weight.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

__all__ = ["export_adapter", "export_expert", "shira_entries"]

EXPORT_NOTE = "seta_export.json"


def _layer_update(layer, local_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """(Δ (out, in) fp32, mask (out, in) bool) of one layer's blocks local_ids (clipped at ragged edges)."""
    grid = layer.grid
    blocks = layer.read(layer.positions(local_ids)).detach().float().cpu()  # (k, b, b), W-oriented
    delta = torch.zeros(grid.out_features, grid.in_features)
    mask = torch.zeros(grid.out_features, grid.in_features, dtype=torch.bool)
    for lid, block in zip(local_ids.tolist(), blocks):
        rs, cs = grid.slices(lid)
        delta[rs, cs] = block[: rs.stop - rs.start, : cs.stop - cs.start]
        mask[rs, cs] = True
    return delta, mask


def shira_entries(seta, task: int) -> tuple[int, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """(r, {layer name: (indices (2, r·(out+in)) int32, values (r·(out+in),) fp32)}) of `task`'s expert in
    SetaModel `seta` (see the module doc). ValueError for a layer SHiRA cannot hold (a 4-bit base layer,
    or blocks covering so much of a weight that r·(out+in) > out·in)."""
    from seta.models.layer import SparseBlockLinear

    if task not in seta.registry.tasks:
        raise ValueError(f"task {task} has no expert; the adapter has tasks 0..{len(seta.registry.tasks) - 1}")
    per = seta.index.split(seta.registry.expert(task))
    bad = [n for n in per if type(seta.layers[n]) is not SparseBlockLinear
           or not isinstance(seta.layers[n].base_layer, torch.nn.Linear)]
    if bad:
        raise ValueError(f"cannot export: layer {bad[0]} is not a dense nn.Linear (4-bit or another layer type), "
                         "and SHiRA adds its entries into a dense weight; export from an adapter on a dense base")
    updates = {n: _layer_update(seta.layers[n], local) for n, local in per.items()}
    r = max((math.ceil(int(m.sum()) / sum(m.shape)) for _, m in updates.values()), default=0)
    out = {}
    for name, (delta, mask) in updates.items():
        n_out, n_in = mask.shape
        need = r * (n_out + n_in) - int(mask.sum())
        free = (~mask).reshape(-1).nonzero().reshape(-1)[:need]  # zero-valued padding outside the blocks
        if free.numel() < need or r * (n_out + n_in) > n_out * n_in:
            raise ValueError(f"cannot export task {task}: its blocks in layer {name} cover {int(mask.sum())} of "
                             f"{n_out * n_in} elements, more than a SHiRA layer of one shared r can hold")
        mask = mask.clone()
        mask.view(-1)[free] = True
        rows, cols = torch.where(mask)  # row-major, as peft's own masks are read
        out[name] = (torch.stack([rows, cols]).to(torch.int32), delta[rows, cols].contiguous())
    return r, out


def export_expert(seta, task: int, out_dir, base_model_name_or_path: str | None = None,
                  note: dict | None = None) -> Path:
    """Write `task`'s expert of SetaModel `seta` to out_dir as a peft SHiRA adapter (the model is unchanged)."""
    from peft import ShiraConfig
    from peft.utils import SAFETENSORS_WEIGHTS_NAME
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not an empty folder; choose a new folder")
    r, entries = shira_entries(seta, task)
    if not entries:
        raise ValueError(f"task {task}'s expert has no blocks: nothing to export")
    tensors = {}
    for name, (indices, values) in entries.items():
        tensors[f"base_model.model.{name}.shira_weight"] = values
        tensors[f"base_model.model.{name}.shira_indices"] = indices
    config = ShiraConfig(r=r, target_modules=sorted(entries), task_type="CAUSAL_LM",
                         base_model_name_or_path=base_model_name_or_path)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    save_file(tensors, str(out / SAFETENSORS_WEIGHTS_NAME), metadata={"format": "pt"})
    block_elements = sum(int(seta.layers[n].grid.mask(loc).sum())
                         for n, loc in seta.index.split(seta.registry.expert(task)).items())
    (out / EXPORT_NOTE).write_text(json.dumps({
        **(note or {}), "task_index": task, "blocks": int(seta.registry.expert(task).numel()), "r": r,
        "layers": len(entries), "block_elements": block_elements,
        "stored_entries": sum(int(v.numel()) for _, v in entries.values())}, indent=1))
    return out


def export_adapter(adapter_dir, task: str, out_dir) -> Path:
    """`export_expert` for task `task` (by name) of the saved SETA adapter in adapter_dir, loaded onto a
    fresh copy of its base (the folder is left untouched). Dense bases only (ValueError for a 4-bit one)."""
    from seta.inference.card import check_base, load_base_from_card, read_card
    from seta.models import SetaModel

    card = read_card(adapter_dir)
    names = [t["name"] for t in card["tasks"]]
    if task not in names:
        raise ValueError(f"unknown task {task!r}; the adapter has: {', '.join(names)}")
    if card["base"].get("load_in_4bit"):
        raise ValueError(f"cannot export {adapter_dir}: its base is 4-bit (NF4), and a SHiRA adapter adds its entries "
                         "into a dense weight; keep the adapter and route with `seta generate --task`, or retrain "
                         "on a dense base")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not an empty folder; choose a new folder")
    model = load_base_from_card(card)
    check_base(card, model, adapter_dir)
    seta = SetaModel.from_pretrained(model, adapter_dir)
    source = card["base"].get("model")
    return export_expert(seta, names.index(task), out, base_model_name_or_path=source,
                         note={"adapter": str(Path(adapter_dir).resolve()), "task": task, "base": card["base"]})
