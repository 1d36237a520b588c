"""Checkpoints without pickle: one safetensors file, tensors as tensors, everything else as JSON.

    save_checkpoint(state, path)   # state: nested dict/list/tuple of tensors, str, int, float, bool, None
    state = load_checkpoint(path)  # the same tree back, bit for bit (tuples, int keys and NaN kept)

Nothing in a checkpoint can run code when it is opened: the file is a safetensors file (a JSON
header plus raw tensor bytes) whose metadata holds the non-tensor part of the state as JSON, so a
results folder from someone else is safe to resume from or inspect. A file that is not such a
checkpoint (e.g. a pickle, with or without a payload) is refused without being unpickled.

Writes are atomic: a temporary file in the same folder, fsync, then rename. A crash mid-write leaves
the previous checkpoint intact and a `<name>.*.tmp` file behind, which `remove_stale_temp_files`
deletes on the next start.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("seta.train")

FORMAT, VERSION = "seta-checkpoint", 2
_STATE_KEY = "seta_state"


class CheckpointError(ValueError):
    """A file that is not a loadable seta checkpoint."""


# ----------------------------------------------------------------------------- tree <-> JSON + tensors
def _pack(obj, tensors: dict, where: str):
    if torch.is_tensor(obj):
        key = f"t{len(tensors)}"
        tensors[key] = obj
        return {"__tensor__": key}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_pack(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: _pack(v, tensors, f"{where}.{k}") for k, v in obj.items()}
        return {"__items__": [[_pack(k, tensors, where), _pack(v, tensors, f"{where}[{k!r}]")] for k, v in obj.items()]}
    raise TypeError(f"checkpoint state {where} is a {type(obj).__name__}: store tensors and plain data only")


def _unpack(obj, tensors: dict):
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__tuple__" in obj:
        return tuple(_unpack(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_unpack(k, tensors): _unpack(v, tensors) for k, v in obj["__items__"]}
    return {k: _unpack(v, tensors) for k, v in obj.items()}


def _storage_key(t: torch.Tensor):
    return (t.untyped_storage().data_ptr(), t.device.type) if t.numel() else None


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write `state` atomically to `path` (safetensors; non-tensor data as JSON in its metadata)."""
    from safetensors.torch import save_file

    path = Path(path)
    raw: dict = {}
    tree = json.dumps(_pack(state, raw, "state"), allow_nan=False, separators=(",", ":"))
    tensors, seen = {}, set()
    for k, v in raw.items():
        v = v.detach().cpu().contiguous()
        key = _storage_key(v)
        if key in seen:  # safetensors refuses tensors sharing memory
            v = v.clone()
        seen.add(_storage_key(v))
        tensors[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": FORMAT, "version": str(VERSION), _STATE_KEY: tree})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The state saved by `save_checkpoint`; CheckpointError for anything else (nothing is unpickled)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; run without --resume to start afresh")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or _STATE_KEY not in meta:
                raise CheckpointError(f"{path} is a safetensors file but not a seta checkpoint")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(
            f"{path} is not a seta checkpoint (safetensors) and is not opened: unpickling a file can run code. "
            "If an older seta wrote it, start afresh without --resume") from None
    if meta.get("version") != str(VERSION):
        raise CheckpointError(f"{path} has checkpoint version {meta.get('version')}, this seta reads {VERSION}; "
                              "start afresh without --resume")
    try:
        return _unpack(json.loads(meta[_STATE_KEY]), tensors)
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{path}: the checkpoint's state is corrupt; start afresh without --resume") from None


def remove_stale_temp_files(folder: str | os.PathLike, name: str) -> list[Path]:
    """Delete `<name>.*.tmp` left in `folder` by a write that was killed; returns what was removed."""
    removed = []
    for p in Path(folder).glob(f"{name}.*.tmp"):
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    if removed:
        log.info("removed %d partial checkpoint file(s) left by an interrupted write: %s", len(removed),
                 ", ".join(p.name for p in removed))
    return removed


# ----------------------------------------------------------------------------------------- RNG
def rng_state() -> dict:
    """Python, NumPy and torch (CPU, and CUDA where present) RNG states as plain data and tensors."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
