"""What a run is, as JSON: so that `--resume` continues only the run a checkpoint belongs to.

    identity = run_identity(strategy, tasks, train_config, extra={"preset": "tiny"})
    problems = identity_diff(saved, identity)   # ["train_config.lr: 0.001 in the checkpoint, 0.002 now", ...]

The identity holds the resolved config (`run_config`: the method and its settings, e.g. {"sparse": SparseConfig,
"seta": SetaConfig with its gate}, the TrainConfig and the caller's extras), the task list, a SHA-256 per task and split of the examples, and a fingerprint of the
base model: its HF config, the names, shapes and dtypes of its parameters and a strided sample of
the values of each of them (4096 values per tensor), cheap even at 7B.
"""

from __future__ import annotations

import hashlib
import json

import torch

ADAPTER_MARKERS = ("lora_", ".blocks", ".train_blocks", "router.")  # parameters that are not the base's
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "name_or_path", "transformers_version", "_commit_hash")


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:16]


def data_fingerprint(tasks) -> dict:
    """{task name: {split: sha of its (prompt, answer) list}}."""
    out = {}
    for task in tasks:
        out[task.name] = {split: _sha(json.dumps([[e.prompt, e.answer] for e in getattr(task, split)]))
                          for split in ("train", "eval", "test")}
    return out


def _hf_config(model) -> dict:
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if hasattr(cfg, "to_dict"):
            d = cfg.to_dict()
            return {k: v for k, v in d.items() if k not in _VOLATILE_CONFIG_KEYS}
    return {}


def _sample_bytes(t: torch.Tensor, max_elems: int = 4096) -> bytes:
    flat = t.detach().reshape(-1)
    step = max(1, flat.numel() // max_elems)
    return flat[::step][:max_elems].cpu().contiguous().view(torch.uint8).numpy().tobytes()


def model_fingerprint(model) -> dict:
    """{"config": sha of the HF config, "weights": sha of the base parameters' layout and samples}."""
    base = [(n, p) for n, p in model.named_parameters() if not any(m in n for m in ADAPTER_MARKERS)]
    h = hashlib.sha256()
    for n, p in base:
        h.update(f"{n}:{tuple(p.shape)}:{p.dtype};".encode())
        if p.device.type != "meta" and p.numel():
            h.update(_sample_bytes(p))
    return {"config": _sha(json.dumps(_hf_config(model), sort_keys=True, default=str)), "weights": h.hexdigest()[:16]}


def run_config(strategy, train_config, extra: dict | None = None) -> dict:
    """The resolved configuration of a run, as JSON: the method, its settings (`strategy.config_dict()`,
    e.g. {"sparse": SparseConfig, "seta": SetaConfig with its gate}), the TrainConfig and `extra` (e.g. {"preset": "tiny"}). Written as
    config.json next to the checkpoint and into summary.json; the first part of `run_identity`."""
    config = {"method": strategy.name, "strategy": type(strategy).__name__, "strategy_config": strategy.config_dict(),
              "train_config": train_config.to_dict(), **(extra or {})}
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def run_identity(strategy, tasks, train_config, extra: dict | None = None, config: dict | None = None) -> dict:
    """The JSON-ready identity of a run (see the module docstring): {"config": `run_config`, "tasks",
    "data", "base_model"}; `config` is used as the first part when given."""
    identity = {
        "config": config if config is not None else run_config(strategy, train_config, extra),
        "tasks": [[t.name, t.metric] for t in tasks],
        "data": data_fingerprint(tasks), "base_model": model_fingerprint(strategy.model),
    }
    return json.loads(json.dumps(identity, sort_keys=True, default=str))


def _flatten(d, prefix=""):
    if isinstance(d, dict) and d:
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _short(v) -> str:
    s = json.dumps(v)
    return s if len(s) <= 60 else s[:57] + "..."


def identity_diff(saved: dict, now: dict) -> list[str]:
    """What differs, one short phrase each: settings with both values ('train_config.lr: 0.001 in the
    checkpoint, 0.002 now'), data by task ('data of FOMC (train, test)'), the base model by part."""
    a, b = _flatten(saved), _flatten(now)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]
    out, data = [], {}
    for k in keys:
        if k.startswith("data."):
            task, _, split = k[5:].rpartition(".")
            data.setdefault(task or split, []).append(split if task else "all")
        elif k.startswith("base_model."):
            out.append(f"base model {k[11:]} (fingerprint)")
        else:
            name = k[len("config."):] if k.startswith("config.") else k  # settings by their own names
            out.append(f"{name}: {_short(a.get(k, '<absent>'))} in the checkpoint, {_short(b.get(k, '<absent>'))} now")
    if data:
        shown = [f"{t} ({', '.join(s)})" for t, s in list(data.items())[:3]]
        more = f" and {len(data) - 3} more tasks" if len(data) > 3 else ""
        out.append(f"data of {', '.join(shown)}{more}")
    return out
