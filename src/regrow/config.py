"""Typed configuration: dataclasses filled from YAML plus `--set key=value` overrides.

Every config in regrow is a tree of dataclasses. `load_config` reads YAML, applies dotted
overrides, and builds the dataclasses with strict checks (unknown keys and wrong types are
errors that name the key and what is allowed), so validation happens in one place and a
typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import types
import typing
from typing import Any, TypeVar

import yaml

from regrow.atomic import write_text_atomic
from regrow.errors import RegrowError
from regrow.reading import check_finite, parse_yaml, read_yaml

__all__ = ["read_yaml", "load_config", "from_dict", "to_dict", "apply_overrides", "parse_override", "flatten"]

T = TypeVar("T")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into (["a", "b", "c"], parsed value); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RegrowError(f"--set expects key=value, got {text!r}")
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str], cls: type | None = None) -> dict[str, Any]:
    """Apply dotted overrides to a nested dict; with `cls`, keys must exist in the dataclass tree."""
    for text in overrides:
        keys, value = parse_override(text)
        if cls is not None:
            _check_key_path(cls, keys, text)
        set_dotted(data, keys, value)
    return data


def set_dotted(data: dict[str, Any], keys: list[str], value: Any) -> dict[str, Any]:
    """data[k1][k2]...[kn] = value, creating (or replacing non-mapping) intermediate levels."""
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value
    return data


def _check_key_path(cls: type, keys: list[str], text: str) -> None:
    current: Any = cls
    for depth, key in enumerate(keys):
        if dataclasses.is_dataclass(current):
            if _variants(current) and key != "name":
                fields = {f.name for variant in _variants(current).values() for f in dataclasses.fields(variant)}
                if key not in fields:
                    raise RegrowError(f"unknown --set key {'.'.join(keys)!r}; no {'.'.join(keys[:depth])} kind has it")
                return
            hints = typing.get_type_hints(current)
            if key not in hints:
                prefix = ".".join(keys[:depth])
                allowed = ", ".join(f"{prefix + '.' if prefix else ''}{name}" for name in hints)
                raise RegrowError(f"unknown --set key {'.'.join(keys)!r}; allowed here: {allowed}")
            current = _strip_optional(hints[key])
        else:
            return  # inside a free-form mapping (model.config, data.mixture): any key


def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _variants(cls: Any) -> dict[str, type] | None:
    """A tagged union: a dataclass base whose `variants` registry picks the class by the `name` key."""
    return getattr(cls, "variants", None) if isinstance(cls, type) else None


def _pick_variant(cls: type, data: Any, where: str) -> tuple[type, dict[str, Any]]:
    if not isinstance(data, dict):
        raise RegrowError(f"{where or 'config'} must be a mapping with a `name`, got {data!r}")
    table = _variants(cls)
    data = dict(data)
    name = data.pop("name", None)
    if name not in table:
        raise RegrowError(f"unknown {where or 'kind'} {name!r}; allowed: {', '.join(table)}")
    return table[name], data


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a mapping, checking keys and types recursively. A base class
    with a `variants` registry (a tagged union) is resolved through the mapping's `name` key."""
    if _variants(cls) is not None:
        cls, data = _pick_variant(cls, data, where)
    if not isinstance(data, dict):
        raise RegrowError(f"{where or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise RegrowError(f"unknown config key {key!r}; allowed: {', '.join(names)}")
    kwargs = {}
    for field in dataclasses.fields(cls):
        key = f"{where}.{field.name}" if where else field.name
        if field.name in data:
            kwargs[field.name] = _coerce(hints[field.name], data[field.name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise RegrowError(f"missing required config key {key!r}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except RegrowError as err:
                errors.append(str(err))
        raise RegrowError(errors[0] if errors else f"config key {key!r} has a bad value {value!r}")
    if tp is Any:
        check_finite(value, key)
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, key)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise RegrowError(f"config key {key!r} must be a mapping, got {value!r}")
        _, value_tp = typing.get_args(tp) or (str, Any)
        return {k: _coerce(value_tp, v, f"{key}.{k}") for k, v in value.items()}
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise RegrowError(f"config key {key!r} must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RegrowError(f"config key {key!r} must be a list, got {value!r}")
        item_types = typing.get_args(tp)
        if len(item_types) != len(value):
            raise RegrowError(f"config key {key!r} needs {len(item_types)} values, got {value!r}")
        return tuple(_coerce(t, v, key) for t, v in zip(item_types, value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise RegrowError(f"config key {key!r} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise RegrowError(f"config key {key!r} must be an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)  # YAML 1.1 reads "3e-4" as a string
            except ValueError:
                pass
        if number is None:
            raise RegrowError(f"config key {key!r} must be a number, got {value!r}")
        if not math.isfinite(number):
            raise RegrowError(f"config key {key!r} is {value}; it must be a finite number")
        return number
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise RegrowError(f"config key {key!r} must be a string, got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """The plain-data form of a config dataclass (what is saved beside every output); a tagged
    union's member writes its `name` first, so the dict loads back into the same class."""
    return _plain(config)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        head = {"name": value.name} if _variants(type(value)) is not None else {}
        return {**head, **{f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_config(cls: type[T], path: str | os.PathLike | None, overrides: list[str] | None = None) -> T:
    """Read YAML (optional), apply `--set` overrides (keys checked against `cls`), build `cls`."""
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, list(overrides or []), cls)
    config = from_dict(cls, data)
    validate = getattr(config, "validate", None)
    if callable(validate) and not _takes_arguments(validate):
        validate()  # every check that needs no files, once, at load
    return config


def _takes_arguments(method) -> bool:
    return any(p.default is inspect.Parameter.empty for p in inspect.signature(method).parameters.values())


def write_yaml_atomic(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write YAML through a temporary file and a rename, so a reader never sees half a file."""
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


def flatten(data: dict[str, Any], keep_whole: tuple[str, ...] = (), prefix: str = "") -> dict[str, Any]:
    """Dotted keys -> leaf values (mappings named in `keep_whole` stay one value), for diffs of configs."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in keep_whole:
            flat.update(flatten(value, keep_whole, name + "."))
        else:
            flat[name] = value
    return flat


def config_diff(saved: dict[str, Any], current: dict[str, Any], keep_whole: tuple[str, ...] = (),
                allowed: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, current value) of every leaf that differs, except `allowed` keys:
    what a resume (train) or a re-run (study) may not change."""
    a, b = flatten(saved, keep_whole), flatten(current, keep_whole)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in allowed]
