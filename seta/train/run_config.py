"""A run's settings from a file (JSON or YAML) plus ``--set key=value`` overrides, checked field by field.

    # run.yaml                                   # or the same as JSON
    train:  {lr: 0.01, epochs: [3]}
    sparse: {ratio: 0.1, anchor_lambda: 0.3}
    gate:   {steps: 200}                          # = sparse.gate

    train, sparse = resolve(TRAIN, SPARSE, read_config_file("run.yaml"), ["train.lr=1e-3", "gate.steps=50"])

Keys are ``train.<field>`` (`TrainConfig`), ``sparse.<field>`` (`SparseConfig`) and ``gate.<field>``
(`GateTrainConfig`, also spelt ``sparse.gate.<field>``). The file is applied first, then every ``--set``
in order. A value is checked against the field's type (an int field takes 3, not 3.5 or "3"; a
``--set`` value is read from its text: ``true``/``false``, numbers, ``none``, lists as ``3,2`` or
``[3, 2]``), then the dataclass's own validation runs. Every mistake is a `ConfigError` (a ValueError)
of one line naming the file or ``--set`` and the field: unknown keys list the close matches. The field
docstrings are the help text (`settings_help`).

No torch here: the config classes are passed in, so a command line can check a file's syntax first.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import textwrap
import types
import typing
from pathlib import Path

SECTIONS = ("train", "sparse", "gate")


class ConfigError(ValueError):
    """A config file or a ``--set`` override that cannot be applied (the message says what to change)."""


# ------------------------------------------------------------------------------------- reading files
def read_config_file(path) -> dict:
    """{section: {field: value}} from a ``.json``, ``.yaml`` or ``.yml`` file (syntax and sections checked;
    fields are checked by `resolve`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"config file {path}: name it .json, .yaml or .yml (the suffix picks the format)")
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); fix that line") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"{where}: not valid YAML ({problem}); fix that line") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)}), got a {type(data).__name__}")
    for key, value in data.items():
        if key not in SECTIONS:
            raise ConfigError(f"{path}: unknown section {key!r}{_close(str(key), SECTIONS)}; sections: {', '.join(SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: section {key!r} must be a mapping of field: value, got {type(value).__name__}")
    return data


def parse_set(items) -> list[tuple[str, str]]:
    """``["train.lr=1e-3", ...]`` -> ``[("train.lr", "1e-3"), ...]``; ConfigError for an item without '='."""
    out = []
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write --set section.field=value, e.g. --set train.lr=1e-3")
        out.append((key.strip(), value.strip()))
    return out


# ------------------------------------------------------------------------------------- fields and help
def field_docs(cls) -> dict[str, str]:
    """{field name: its docstring} of a dataclass (the string literal right after the field)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for stmt, nxt in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def _sections(train_cls, sparse_cls) -> dict[str, type]:
    gate_cls = typing.get_type_hints(sparse_cls)["gate"]
    return {"train": train_cls, "sparse": sparse_cls, "gate": gate_cls}


def known_keys(train_cls, sparse_cls) -> dict[str, tuple[type, object, str]]:
    """{"section.field": (type, default, help)} of every setting (the nested gate as ``gate.*``)."""
    out = {}
    for section, cls in _sections(train_cls, sparse_cls).items():
        hints, docs = typing.get_type_hints(cls), field_docs(cls)
        for f in dataclasses.fields(cls):
            if section == "sparse" and f.name == "gate":
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out[f"{section}.{f.name}"] = (hints[f.name], default, docs.get(f.name, ""))
    return out


def _type_name(tp) -> str:
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "none" if tp is type(None) else getattr(tp, "__name__", str(tp))


def settings_help(train_cls, sparse_cls, current: tuple | None = None) -> str:
    """One paragraph per setting: key, type, value (the defaults, or `current` = (train, sparse)), docstring."""
    values = _flat(*current) if current is not None else {}
    lines = []
    for key, (tp, default, doc) in known_keys(train_cls, sparse_cls).items():
        value = values.get(key, default)
        shown = json.dumps(list(value) if isinstance(value, tuple) else value)
        lines.append(f"{key} ({_type_name(tp)}) = {shown}\n    {doc}")
    return "\n".join(lines)


def _flat(train, sparse) -> dict:
    out = {f"train.{f.name}": getattr(train, f.name) for f in dataclasses.fields(train)}
    out.update({f"sparse.{f.name}": getattr(sparse, f.name) for f in dataclasses.fields(sparse) if f.name != "gate"})
    out.update({f"gate.{f.name}": getattr(sparse.gate, f.name) for f in dataclasses.fields(sparse.gate)})
    return out


def _close(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    if not close:  # the field name alone, in any section
        field = key.rsplit(".", 1)[-1]
        close = [k for k in known if k.rsplit(".", 1)[-1] == field]
    return f" (did you mean {', '.join(close)}?)" if close else ""


# ------------------------------------------------------------------------------------- values
def _from_text(text: str, tp):
    """A ``--set`` value's text as a value of type tp (ValueError when it is not one)."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if type(None) in args and text.lower() in ("none", "null", ""):
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _from_text(text, arg)
                except ValueError:
                    pass
        raise ValueError
    if origin is tuple:
        body = text.strip()
        if body.startswith("[") and body.endswith("]"):
            body = body[1:-1]
        parts = [p.strip().strip("'\"") for p in body.split(",") if p.strip()]
        return tuple(_from_text(p, typing.get_args(tp)[0]) for p in parts)
    if tp is bool:
        low = text.lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0"):
            return False
        raise ValueError
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    if tp is str:
        return text
    raise ValueError


def _check_value(value, tp):
    """A value read from a file, checked against type tp (ValueError when it is not one)."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
            if arg is not type(None):
                try:
                    return _check_value(value, arg)
                except ValueError:
                    pass
        raise ValueError
    if origin is tuple:
        if not isinstance(value, list):
            value = [value]  # one value for a list field (e.g. epochs: 3)
        return tuple(_check_value(v, typing.get_args(tp)[0]) for v in value)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    raise ValueError


# ------------------------------------------------------------------------------------- resolving
def resolve(train, sparse, file_data: dict | None = None, overrides=(), *, source: str = "config file"):
    """(TrainConfig, SparseConfig) = the given ones with the file's sections, then every override, applied.

    file_data: `read_config_file`'s result (source: its path, for messages); overrides: ``--set`` items,
    strings ``key=value``. ConfigError (one line) for any key, type or value that is wrong."""
    known = known_keys(type(train), type(sparse))
    changes: dict[str, tuple[object, str]] = {}  # key -> (value, where it came from)
    for section, fields_ in (file_data or {}).items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section {section!r}; sections: {', '.join(SECTIONS)}")
        for name, value in fields_.items():
            if section == "sparse" and name == "gate":
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: sparse.gate must be a mapping of field: value")
                items = [(f"gate.{k}", v) for k, v in value.items()]
            else:
                items = [(f"{section}.{name}", value)]
            for key, v in items:
                changes[key] = (_checked(key, v, known, source, text=False), source)
    for key, text in parse_set(overrides):
        key = "gate." + key[len("sparse.gate."):] if key.startswith("sparse.gate.") else key
        changes[key] = (_checked(key, text, known, f"--set {key}", text=True), f"--set {key}")
    return _build(train, sparse, changes)


def _checked(key, value, known, where, text: bool):
    if key not in known:
        raise ConfigError(f"{where}: unknown setting {key!r}{_close(key, known)}; the settings are "
                          f"{', '.join(s + '.*' for s in SECTIONS)} (list them with --show-settings)")
    tp = known[key][0]
    try:
        return _from_text(value, tp) if text else _check_value(value, tp)
    except (ValueError, TypeError):
        shown = repr(value) if text else json.dumps(value)
        raise ConfigError(f"{where}: {key} takes {_type_name(tp)}, got {shown}") from None


def _build(train, sparse, changes: dict):
    by = {s: {} for s in SECTIONS}
    where = {s: {} for s in SECTIONS}
    for key, (value, src) in changes.items():
        section, name = key.split(".", 1)
        by[section][name], where[section][name] = value, src
    try:
        gate = dataclasses.replace(sparse.gate, **by["gate"]) if by["gate"] else sparse.gate
    except ValueError as err:
        raise ConfigError(_invalid("gate", where, err)) from None
    try:
        sparse = dataclasses.replace(sparse, gate=gate, **by["sparse"])
    except ValueError as err:
        raise ConfigError(_invalid("sparse", where, err)) from None
    try:
        train = dataclasses.replace(train, **by["train"]) if by["train"] else train
    except ValueError as err:
        raise ConfigError(_invalid("train", where, err)) from None
    return train, sparse


def _invalid(section, where, err) -> str:
    srcs = sorted(set(where[section].values())) or ["the preset"]
    return f"{', '.join(srcs)}: {' '.join(str(err).split())}"


def resolved_dict(train, sparse) -> dict:
    """The settings as JSON-ready data: {"train": {...}, "sparse": {..., "gate": {...}}}."""
    return json.loads(json.dumps({"train": dataclasses.asdict(train), "sparse": dataclasses.asdict(sparse)}))
