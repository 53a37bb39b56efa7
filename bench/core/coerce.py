"""Validated construction of config dataclasses from plain dicts (YAML).

Every error names the dotted path of the bad field, e.g.
``protocol.train.lr: expected a number, got 'fast'``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
from typing import Any, Mapping, Type, TypeVar

from .errors import ConfigError
from .registry import suggest

T = TypeVar("T")

# Field metadata for settings that describe the machine, not the experiment
# (paths, worker counts, caches): they are left out of the result key, so
# moving a dataset does not re-run it.  Use: field(default=..., metadata=ENV).
ENV = {"identity": False}
# Bounds, checked wherever the field is set: field(default=1, metadata={"min": 1, "max": 64}).
LARGEST_INT = 2**63 - 1
_MISSING = dataclasses.MISSING


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false", type(None): "null"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the type hint ``tp`` and return it (possibly converted)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is typing.Union:
        errors = []
        for option in typing.get_args(tp):
            try:
                return coerce(value, option, where)
            except ConfigError as err:
                errors.append((option, err))
        for option, err in errors:  # a mapping given for a dataclass: its own field error says more
            if isinstance(value, Mapping) and dataclasses.is_dataclass(option):
                raise err
        raise ConfigError(where, f"expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = suggest(str(value), [str(c) for c in choices])
            raise ConfigError(where, f"expected {_type_name(tp)}, got {value!r}{hint}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(where, f"expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
        return [coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(where, f"expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is type(None):
        if value is not None:
            raise ConfigError(where, f"expected null, got {value!r}")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(where, f"expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(where, f"expected an integer, got {value!r}")
        if abs(value) > LARGEST_INT:  # numpy/torch take 64-bit integers
            raise ConfigError(where, f"expected an integer of at most {LARGEST_INT} in size, got {value}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML reads "5e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(where, f"expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML's .nan / .inf, or "nan" / "inf"
            raise ConfigError(where, f"expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(where, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def from_dict(cls: Type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown and ill-typed fields."""
    kwargs = check_fields(cls, data, where)
    for f in dataclasses.fields(cls):
        if f.init and f.name not in kwargs and f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError(f"{where}.{f.name}" if where else f.name, "required field is missing")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(where)
    return obj


@functools.lru_cache(maxsize=None)  # a class's fields never change; resolving the hints dominated planning
def field_types(cls: type) -> tuple:
    """``(type hints, init fields by name)`` of dataclass ``cls``."""
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls) if f.init}


def check_fields(cls: type, data: Any, where: str) -> dict:
    """Type-check the fields given in ``data`` (a partial config) without
    requiring the rest; returns them converted.  Cross-field checks wait
    until the layers are merged and :func:`from_dict` builds the whole."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"expected a mapping, got {data!r}")
    hints, fields = field_types(cls)
    out = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(
                f"{where}.{key}" if where else str(key),
                f"unknown field{suggest(str(key), fields)} (known fields: {', '.join(fields) or 'none'})",
            )
        out[key] = coerce(value, hints[key], f"{where}.{key}" if where else key)
        check_bound(out[key], fields[key].metadata, f"{where}.{key}" if where else key)
    return out


def check_bound(value: Any, metadata: Mapping, where: str) -> None:
    """Field bounds declared as ``metadata={"min": m, "max": M}`` hold in every layer, partial or whole."""
    low, high = metadata.get("min"), metadata.get("max")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if low is not None and value < low:
        raise ConfigError(where, "must not be negative" if low == 0 else f"must be at least {low}")
    if high is not None and value > high:
        raise ConfigError(where, f"must be at most {high}")


def identity(cfg: Any) -> dict:
    """The fields of dataclass ``cfg`` that determine results (those not marked ENV)."""
    out = {}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("identity", True):
            value = getattr(cfg, f.name)
            out[f.name] = identity(value) if dataclasses.is_dataclass(value) else value
    return out
