"""A setting's value checked against its field's type: from a ``--set`` text (`from_text`) or from a
config file's JSON/YAML value (`check_value`); `type_name` is how messages and help spell a type. A float
setting takes finite numbers only (NaN and infinity are refused).
Used by `seta.train.run_config`; no torch here."""

from __future__ import annotations

import math
import types
import typing


def type_name(tp) -> str:
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    return "none" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _union_member(value, tp, convert):
    """convert(value, member) for the first member type of union tp (None's aside) that takes it."""
    for arg in typing.get_args(tp):
        if arg is not type(None):
            try:
                return convert(value, arg)
            except ValueError:
                pass
    raise ValueError


def from_text(text: str, tp):
    """A ``--set`` value's text as a value of type tp (ValueError when it is not one)."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        if type(None) in typing.get_args(tp) and text.lower() in ("none", "null", ""):
            return None
        return _union_member(text, tp, from_text)
    if origin is tuple:
        body = text.strip()
        if body.startswith("[") and body.endswith("]"):
            body = body[1:-1]
        parts = [p.strip().strip("'\"") for p in body.split(",") if p.strip()]
        return tuple(from_text(p, typing.get_args(tp)[0]) for p in parts)
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
        return _finite(float(text))
    if tp is str:
        return text
    raise ValueError


def _finite(x: float) -> float:
    if not math.isfinite(x):  # NaN and infinity pass float() and every comparison check that follows
        raise ValueError
    return x


def check_value(value, tp):
    """A value read from a file, checked against type tp (ValueError when it is not one)."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        if type(None) in typing.get_args(tp) and value is None:
            return None
        return _union_member(value, tp, check_value)
    if origin is tuple:
        if not isinstance(value, list):
            value = [value]  # one value for a list field (e.g. epochs: 3)
        return tuple(check_value(v, typing.get_args(tp)[0]) for v in value)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite(float(value))
    if tp is str and isinstance(value, str):
        return value
    raise ValueError
