"""An adapter folder's files checked before anything uses them: a folder may be damaged or hostile.

    read_json_file(path, what)     size-bounded, UTF-8, nesting bounded: a dict, or ValueError naming the file
    check_card(card, path)         seta_adapter.json's schema: types, required keys, printable task names
    files_sha256(directory)        {file name: sha256} of seta_config.json and seta_model.safetensors,
                                   which the card records when the adapter is saved (`write_card`)
    check_adapter(directory, card) the recorded hashes (when the card has them), seta_config.json's
                                   structure, the safetensors header (size-bounded, parsed by hand),
                                   its tensor names and shapes against seta_config.json, every weight finite

A card without hashes (written before cards recorded them, or edited) is still loaded: every other
check runs. Every failure is a ValueError of one line naming the file and what to do. No torch here
except in the finiteness check.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from seta.train.run_config import nesting_depth

CONFIG_NAME, WEIGHTS_NAME = "seta_config.json", "seta_model.safetensors"
MAX_CARD_BYTES = 4 * 2**20  # a card of 4096 tasks with long paths is well under 4 MiB
MAX_CONFIG_BYTES = 256 * 2**20  # the ownership registry of a 7B model's experts is a few MiB
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit
MAX_DEPTH = 16  # cards and configs nest 4 levels
MAX_TASKS, MAX_NAME = 4096, 200
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_FIX = "restore the adapter folder from a good copy, or retrain it"


def damaged(path, what: str) -> ValueError:
    return ValueError(f"{path} is damaged: {what}; {_FIX}")


def read_json_file(path, what: str, max_bytes: int = MAX_CARD_BYTES) -> dict:
    """The JSON object in `path`: at most max_bytes, UTF-8, nested at most MAX_DEPTH levels."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise damaged(path, f"{size} bytes, more than a {what} can hold ({max_bytes})")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise damaged(path, f"not UTF-8 text (byte {err.start})") from None
    except RecursionError:
        raise damaged(path, "its JSON nests too deeply") from None
    except ValueError as err:
        raise damaged(path, f"not valid JSON ({str(err).split(':')[0]})") from None
    if not isinstance(data, dict):
        raise damaged(path, f"a {what} is a JSON object, not a {type(data).__name__}")
    if nesting_depth(data) > MAX_DEPTH:
        raise damaged(path, f"its JSON nests more than {MAX_DEPTH} levels")
    return data


# ---- the card ---------------------------------------------------------------------------------------
def printable_name(value) -> bool:
    """A non-empty string of printable characters (no control, ANSI escape, bidi override), at most MAX_NAME."""
    import unicodedata

    return (isinstance(value, str) and 0 < len(value) <= MAX_NAME and value == value.strip()
            and all(c.isprintable() and unicodedata.category(c) not in ("Cf", "Cs", "Co") for c in value))


def _is_int(v, lo=None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo)


def _shown(value) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _need(ok: bool, path, key: str, what: str, value) -> None:
    if not ok:
        raise damaged(path, f"{key} must be {what}, got {_shown(value)}")


def _check_source(src, path, key) -> None:
    _need(isinstance(src, dict) and _is_int(src.get("seed"), 0), path, key, 'an object with an integer "seed"', src)
    if "data_dir" in src:
        _need(isinstance(src["data_dir"], str) and src["data_dir"] != "", path, f"{key}.data_dir", "a path", src["data_dir"])
        load = src.get("load", {})
        _need(isinstance(load, dict) and all(v is None or _is_int(v, 1) for v in load.values()), path, f"{key}.load",
              "an object of example counts", load)
    else:
        syn = src.get("synthetic")
        _need(isinstance(syn, dict) and all(k in ("n_train", "n_eval", "n_test") and _is_int(v, 1) and v <= 10**6
                                            for k, v in syn.items()), path, f"{key}.synthetic",
              'an object of n_train, n_eval, n_test (or give "data_dir")', syn)


def build_config(cls, values, path, key: str):
    """cls(**values) of a dataclass read from a card, every field's type checked first (nested dataclasses
    too): ValueError naming `path` and the key otherwise."""
    import dataclasses
    import typing

    from seta.train.setting_types import check_value, type_name

    _need(isinstance(values, dict), path, key, "an object", values)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in values.items():
        if k not in known:
            raise damaged(path, f"{key} has an unknown field {_shown(k)}")
        if dataclasses.is_dataclass(hints[k]):
            kwargs[k] = build_config(hints[k], v, path, f"{key}.{k}")
            continue
        try:
            kwargs[k] = check_value(v, hints[k])
        except ValueError:
            raise damaged(path, f"{key}.{k} must be {type_name(hints[k])}, got {_shown(v)}") from None
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise damaged(path, f"{key}: {' '.join(str(err).split())}") from None


def check_card(card: dict, path) -> None:
    """ValueError (naming `path` and the key) unless `card` has the card's keys, of the card's types."""
    from seta.train.strategies import STRATEGIES

    _need(_is_int(card.get("version"), 1), path, "version", "a positive integer", card.get("version"))
    _need(isinstance(card.get("method"), str) and card["method"] in STRATEGIES, path, "method", f"one of {', '.join(STRATEGIES)}", card.get("method"))
    _need(card.get("preset") is None or printable_name(card["preset"]), path, "preset", "a name", card.get("preset"))
    base = card.get("base")
    _need(isinstance(base, dict), path, "base", "an object", base)
    _need(base.get("kind") in ("tiny", "hf"), path, "base.kind", '"tiny" or "hf"', base.get("kind"))
    for key in ("model", "tokenizer"):
        _need(isinstance(base.get(key), str) and base[key] != "", path, f"base.{key}", "a path or hub id", base.get(key))
    _need(base.get("dtype", "bfloat16") in ("float32", "bfloat16", "float16"), path, "base.dtype",
          "float32, bfloat16 or float16", base.get("dtype"))
    _need(isinstance(base.get("load_in_4bit", False), bool), path, "base.load_in_4bit", "true or false", base.get("load_in_4bit"))
    for key in ("model_type", "config_hash", "weights_hash"):
        _need(base.get(key) is None or isinstance(base[key], str), path, f"base.{key}", "a string", base.get(key))
    tasks = card.get("tasks")
    _need(isinstance(tasks, list) and 0 < len(tasks) <= MAX_TASKS, path, "tasks", f"a list of 1 to {MAX_TASKS} tasks", tasks)
    for j, t in enumerate(tasks):
        key = f"tasks[{j}]"
        _need(isinstance(t, dict), path, key, "an object", t)
        _need(printable_name(t.get("name")), path, f"{key}.name",
              f"a name of 1 to {MAX_NAME} printable characters", t.get("name"))
        _need(printable_name(t.get("metric")), path, f"{key}.metric", "a metric name", t.get("metric"))
        _need(_is_int(t.get("max_new_tokens"), 1), path, f"{key}.max_new_tokens", "a positive integer", t.get("max_new_tokens"))
        _need(t.get("stop") is None or isinstance(t["stop"], str), path, f"{key}.stop", "a string or null", t.get("stop"))
        _check_source(t.get("source"), path, f"{key}.source")
    names = [t["name"] for t in tasks]
    _need(len(set(names)) == len(names), path, "tasks", "tasks of distinct names", names)
    from seta.train.config import TrainConfig

    build_config(TrainConfig, card.get("train_config"), path, "train_config")
    for key in ("sparse_config", "seta_config"):
        if key in card or key == "sparse_config":
            _need(isinstance(card.get(key), dict), path, key, "an object", card.get(key))
    sparse = card["sparse_config"]
    _need(_is_int(sparse.get("block_size"), 1), path, "sparse_config.block_size", "a positive integer", sparse.get("block_size"))
    _need(_is_int(card.get("prompt_cap"), 1), path, "prompt_cap", "a positive integer", card.get("prompt_cap"))
    sha = card.get("sha256", {})
    _need(isinstance(sha, dict) and all(k in (CONFIG_NAME, WEIGHTS_NAME) and isinstance(v, str) and len(v) == 64
                                        for k, v in sha.items()), path, "sha256", "file hashes", sha)


def check_routing(seta: dict, path) -> None:
    """The routing fields of a gated adapter's seta_config."""
    _need(seta.get("routing") in ("top1", "soft", "oracle"), path, "seta_config.routing", "top1, soft or oracle",
          seta.get("routing"))
    _need(_is_int(seta.get("soft_k"), 1), path, "seta_config.soft_k", "a positive integer", seta.get("soft_k"))
    _need(isinstance(seta.get("null_expert"), bool), path, "seta_config.null_expert", "true or false", seta.get("null_expert"))


# ---- the weights ------------------------------------------------------------------------------------
def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_sha256(directory) -> dict:
    d = Path(directory)
    return {name: sha256_file(d / name) for name in (CONFIG_NAME, WEIGHTS_NAME) if (d / name).is_file()}


def safetensors_header(path) -> dict:
    """{tensor name: {"dtype", "shape", "data_offsets"}} of a safetensors file, every entry checked against
    the file's size before any tensor is read."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise damaged(path, f"{size} bytes, too short for a safetensors file")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise damaged(path, f"its header claims {n} bytes but the file has {size} (truncated or corrupted)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise damaged(path, "its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise damaged(path, "its header is not a JSON object")
    header.pop("__metadata__", None)
    body = size - 8 - n
    for name, e in header.items():
        ok = (isinstance(e, dict) and isinstance(e.get("dtype"), str) and e["dtype"] in _ITEMSIZE and isinstance(e.get("shape"), list)
              and len(e["shape"]) <= 8 and all(_is_int(s, 0) for s in e["shape"]) and isinstance(e.get("data_offsets"), list)
              and len(e["data_offsets"]) == 2 and all(_is_int(o, 0) for o in e["data_offsets"]))
        if not ok or not e["data_offsets"][0] <= e["data_offsets"][1] <= body or (
                e["data_offsets"][1] - e["data_offsets"][0] != math.prod(e["shape"]) * _ITEMSIZE[e["dtype"]]):
            raise damaged(path, f"the header entry of tensor {_shown(name)} does not fit the file")
    return header


def _check_config(cfg: dict, path) -> None:
    ec, layers, reg, router = (cfg.get(k) for k in ("expert_config", "layers", "registry", "router"))
    _need(isinstance(ec, dict) and _is_int(ec.get("block_size"), 1), path, "expert_config", "an object with a block_size", ec)
    _need(isinstance(layers, dict) and all(isinstance(v, list) and len(v) == 2 and all(_is_int(x, 1) for x in v)
                                           for v in layers.values()), path, "layers", "an object of [out, in] shapes", layers)
    _need(isinstance(reg, dict) and _is_int(reg.get("n_blocks"), 0) and isinstance(reg.get("experts"), list), path,
          "registry", "an object with n_blocks and experts", reg)
    n = reg["n_blocks"]
    _need(all(isinstance(e, list) and len(e) == 2 and _is_int(e[0], 0) and isinstance(e[1], list)
              and all(_is_int(i, 0) and i < n for i in e[1]) for e in reg["experts"]), path, "registry.experts",
          f"a list of [task, [block ids below {n}]]", reg["experts"])
    _need(isinstance(router, dict) and _is_int(router.get("feature_dim"), 1) and _is_int(router.get("hidden"), 0)
          and isinstance(router.get("shrinkage"), (int, float)) and isinstance(router.get("diagonal"), bool), path,
          "router", "an object with feature_dim, hidden, shrinkage and diagonal", router)
    tasks, thresholds = router.get("tasks"), router.get("thresholds")
    _need(isinstance(tasks, list) and tasks == list(range(len(tasks))), path, "router.tasks", "the task ids 0, 1, ...", tasks)
    _need(isinstance(thresholds, dict) and all(k.isdigit() and int(k) < len(tasks) and isinstance(v, (int, float))
                                               for k, v in thresholds.items()), path, "router.thresholds",
          "an object of task id: number", thresholds)


def _router_tensor_fits(name: str, shape: list, router: dict) -> bool:
    """router.gate.heads.<t>.* (shapes known for a linear gate) and router.stats.<t>.{mean, m2, n}."""
    parts, d, tasks = name.split("."), router["feature_dim"], len(router["tasks"])
    if len(parts) < 4 or parts[0] != "router" or not parts[3 if parts[1] == "gate" else 2].isdigit():
        return False
    if parts[1] == "gate" and parts[2] == "heads" and int(parts[3]) < tasks:
        return router["hidden"] > 0 or {"weight": shape == [1, d], "bias": shape == [1]}.get(parts[-1], False)
    if parts[1] == "stats" and int(parts[2]) < tasks and len(parts) == 4:
        m2 = [d] if router["diagonal"] else [d, d]
        return {"mean": shape == [d], "m2": shape == m2, "n": shape == []}.get(parts[3], False)
    return False


def _check_tensors(header: dict, cfg: dict, path) -> None:
    b, layers = cfg["expert_config"]["block_size"], cfg["layers"]
    for name, e in header.items():
        shape = e["shape"]
        if name.startswith("layers.") and name.endswith(".blocks"):
            n = header.get(name[: -len("blocks")] + "local_ids", {}).get("shape")
            ok = name[7:-7] in layers and len(shape) == 3 and shape[1:] == [b, b] and n == shape[:1]
        elif name.startswith("layers.") and name.endswith(".local_ids"):
            ok = name[7:-10] in layers and len(shape) == 1 and name[:-len("local_ids")] + "blocks" in header
        elif name in ("anchors.ids", "anchors.count"):
            ok = len(shape) == 1
        elif name in ("anchors.values", "anchors.fisher"):
            ok = len(shape) == 3 and shape[1:] == [b, b]
        else:
            ok = _router_tensor_fits(name, shape, cfg["router"])
        if not ok:
            raise damaged(path, f"tensor {_shown(name)} of shape {shape} does not match {CONFIG_NAME} (block size {b})")
    if any(n not in header for n in ("anchors.ids", "anchors.values", "anchors.fisher")):
        raise damaged(path, "its anchors are missing")


def check_adapter(directory, card: dict) -> None:
    """The files of a (card-checked) adapter folder, before any model is loaded; ValueError naming the file."""
    d = Path(directory)
    for name, want in card.get("sha256", {}).items():
        if sha256_file(d / name) != want:
            raise damaged(d / name, f"its sha256 differs from the one {d / 'seta_adapter.json'} recorded at save")
    cfg = read_json_file(d / CONFIG_NAME, "seta_config.json", MAX_CONFIG_BYTES)
    _check_config(cfg, d / CONFIG_NAME)
    header = safetensors_header(d / WEIGHTS_NAME)
    _check_tensors(header, cfg, d / WEIGHTS_NAME)
    from safetensors import safe_open

    with safe_open(str(d / WEIGHTS_NAME), framework="pt") as f:
        for name in f.keys():
            t = f.get_tensor(name)
            if t.is_floating_point() and not bool(t.isfinite().all()):
                raise damaged(d / WEIGHTS_NAME, f"tensor {name} holds NaN or infinite values")
