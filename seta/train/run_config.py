"""A run's settings from a file (JSON or YAML) plus ``--set key=value`` overrides, checked field by field.

    # run.yaml                                   # or the same as JSON
    train:  {lr: 0.01, epochs: [3]}
    sparse: {ratio: 0.1}
    seta:   {anchor_lambda: 0.3}
    gate:   {steps: 200}                          # = seta.gate

    settings = resolve(preset.settings(), read_config_file("run.yaml"), ["train.lr=1e-3", "gate.steps=50"])

Keys are ``<section>.<field>`` of the sections the caller passes (a run's: ``train`` `TrainConfig`,
``sparse`` `SparseConfig`, ``seta`` `SetaConfig`, ``ewc`` `EWCConfig`, ``lwf`` `LwFConfig`) and
``gate.<field>`` (`GateTrainConfig`, SETA's gate; also spelt ``seta.gate.<field>`` or, as before the
settings were split, ``sparse.gate.<field>``). The file is applied first, then every ``--set`` in order. A value is checked against the field's type (an int field takes 3, not 3.5 or "3"; a
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
import typing
from pathlib import Path

from seta.train.setting_types import check_value, from_text, type_name

SECTIONS = ("train", "sparse", "seta", "ewc", "lwf", "gate")
NESTED = {"gate": ("seta", "gate")}  # a section that is a field of another: gate.* = seta.gate.*
GATE_SPELLINGS = ("seta.gate.", "sparse.gate.")  # other spellings of gate.* (the second: before the split)


class ConfigError(ValueError):
    """A config file or a ``--set`` override that cannot be applied (the message says what to change)."""


# ------------------------------------------------------------------------------------- reading files
MAX_CONFIG_BYTES, MAX_DEPTH = 1 << 20, 8  # a run's settings fit in a few KiB and nest 4 levels


def _load_yaml(text: str, path):
    """YAML without aliases, anchors or duplicate keys (an alias bomb expands a 1 KB file to gigabytes)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None) is not None:
                mark = self.peek_event().start_mark
                raise ConfigError(f"{path}:{mark.line + 1}: YAML anchors and aliases (&, *) are not accepted in a "
                                  "config file; write the value out")
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    raise ConfigError(f"{path}:{key_node.start_mark.line + 1}: a key must be a name, not "
                                      f"{type(key).__name__}")
                if key in seen:
                    raise ConfigError(f"{path}:{key_node.start_mark.line + 1}: key {key!r} is given twice; keep one")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506  (a SafeLoader subclass)
    except ConfigError:
        raise
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"{path}: a value cannot be read ({' '.join(str(err).split())[:80]})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem}); fix that line") from None


def _load_json(text: str, path):
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ConfigError(f"{path}: key {twice[0]!r} is given twice in one object; keep one")
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); fix that line") from None
    except ConfigError:
        raise
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"{path}: a value cannot be read ({' '.join(str(err).split())[:80]})") from None


def nesting_depth(value) -> int:
    """Levels of nested dicts and lists in a parsed JSON/YAML value (a scalar: 1), computed without recursion."""
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x if isinstance(x, list) else ())]
    return depth


def read_config_file(path) -> dict:
    """{section: {field: value}} from a ``.json``, ``.yaml`` or ``.yml`` file (syntax and sections checked;
    fields are checked by `resolve`). At most 1 MiB of UTF-8, nested at most 8 levels; no YAML anchors or
    aliases; no key twice."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""))
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"config file {path}: name it .json, .yaml or .yml (the suffix picks the format)")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is {path.stat().st_size} bytes; a config file holds at most "
                          f"{MAX_CONFIG_BYTES} (a few settings)")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    try:
        data = _load_json(text, path) if suffix == ".json" else _load_yaml(text, path)
    except RecursionError:
        raise ConfigError(f"{path}: nested more than {MAX_DEPTH} levels; a config file is sections of field: value") from None
    if nesting_depth(data) > MAX_DEPTH:
        raise ConfigError(f"{path}: nested more than {MAX_DEPTH} levels; a config file is sections of field: value")
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


def _nested_field(section: str, name: str) -> bool:
    return (section, name) in NESTED.values()


def known_keys(classes: dict[str, type]) -> dict[str, tuple[type, object, str]]:
    """{"section.field": (type, default, help)} of every setting of classes {section: config class}
    (a nested section such as the gate's listed as ``gate.*``)."""
    classes = dict(classes)
    for alias, (parent, name) in NESTED.items():
        if parent in classes:
            classes[alias] = typing.get_type_hints(classes[parent])[name]
    out = {}
    for section, cls in classes.items():
        hints, docs = typing.get_type_hints(cls), field_docs(cls)
        for f in dataclasses.fields(cls):
            if _nested_field(section, f.name):
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out[f"{section}.{f.name}"] = (hints[f.name], default, docs.get(f.name, ""))
    return out


def settings_help(classes: dict[str, type], current: dict | None = None) -> str:
    """One paragraph per setting: key, type, value (the defaults, or `current` = {section: config}), docstring."""
    values = _flat(current) if current is not None else {}
    lines = []
    for key, (tp, default, doc) in known_keys(classes).items():
        value = values.get(key, default)
        shown = json.dumps(list(value) if isinstance(value, tuple) else value)
        lines.append(f"{key} ({type_name(tp)}) = {shown}\n    {doc}")
    return "\n".join(lines)


def _flat(settings: dict) -> dict:
    settings = {**settings, **{a: getattr(settings[p], n) for a, (p, n) in NESTED.items() if p in settings}}
    return {f"{s}.{f.name}": getattr(cfg, f.name) for s, cfg in settings.items() for f in dataclasses.fields(cfg)
            if not _nested_field(s, f.name)}


def _close(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    if not close:  # the field name alone, in any section
        field = key.rsplit(".", 1)[-1]
        close = [k for k in known if k.rsplit(".", 1)[-1] == field]
    return f" (did you mean {', '.join(close)}?)" if close else ""


# ------------------------------------------------------------------------------------- resolving
def resolve(settings: dict, file_data: dict | None = None, overrides=(), *, source: str = "config file") -> dict:
    """{section: config} = `settings` ({section: config}) with the file's sections, then every override, applied.

    file_data: `read_config_file`'s result (source: its path, for messages); overrides: ``--set`` items,
    strings ``key=value``. ConfigError (one line) for any key, type or value that is wrong."""
    known = known_keys({s: type(c) for s, c in settings.items()})
    changes: dict[str, tuple[object, str]] = {}  # key -> (value, where it came from)
    for section, fields_ in (file_data or {}).items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section {section!r}; sections: {', '.join(SECTIONS)}")
        for name, value in fields_.items():
            if section in ("seta", "sparse") and name == "gate":
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: {section}.gate must be a mapping of field: value")
                items = [(f"gate.{k}", v) for k, v in value.items()]
            else:
                items = [(f"{section}.{name}", value)]
            for key, v in items:
                changes[key] = (_checked(key, v, known, source, text=False), source)
    for key, text in parse_set(overrides):
        for spelling in GATE_SPELLINGS:
            key = "gate." + key[len(spelling):] if key.startswith(spelling) else key
        changes[key] = (_checked(key, text, known, f"--set {key}", text=True), f"--set {key}")
    return _build(settings, changes)


def _checked(key, value, known, where, text: bool):
    if key not in known:
        sections = sorted({k.split(".", 1)[0] for k in known}, key=SECTIONS.index)
        raise ConfigError(f"{where}: unknown setting {key!r}{_close(key, known)}; the settings are "
                          f"{', '.join(s + '.*' for s in sections)} (list them with --show-settings)")
    tp = known[key][0]
    try:
        return from_text(value, tp) if text else check_value(value, tp)
    except (ValueError, TypeError):
        shown = repr(value) if text else json.dumps(value, default=str)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ConfigError(f"{where}: {key} takes {type_name(tp)}{' (a finite number)' if tp is float else ''}, "
                          f"got {shown}") from None


def _build(settings: dict, changes: dict) -> dict:
    by = {s: {} for s in SECTIONS}
    where = {s: {} for s in SECTIONS}
    for key, (value, src) in changes.items():
        section, name = key.split(".", 1)
        by[section][name], where[section][name] = value, src
    for alias, (parent, name) in NESTED.items():  # a nested section first: its parent takes it as one field
        if by[alias]:
            try:
                by[parent][name] = dataclasses.replace(getattr(settings[parent], name), **by[alias])
            except ValueError as err:
                raise ConfigError(_invalid(alias, where, err)) from None
            where[parent].setdefault(name, sorted(set(where[alias].values()))[0])
    out = dict(settings)
    for section, cfg in settings.items():
        if by[section]:
            try:
                out[section] = dataclasses.replace(cfg, **by[section])
            except ValueError as err:
                raise ConfigError(_invalid(section, where, err)) from None
    return out


def _invalid(section, where, err) -> str:
    srcs = sorted(set(where[section].values())) or ["the preset"]
    return f"{', '.join(srcs)}: {' '.join(str(err).split())}"


def resolved_dict(settings: dict) -> dict:
    """The settings as JSON-ready data: {section: {field: value, ...}} (the gate inside "seta")."""
    return json.loads(json.dumps({s: dataclasses.asdict(c) for s, c in settings.items()}))
