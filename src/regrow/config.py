"""Typed configuration: dataclasses filled from YAML plus `--set key=value` overrides.

Every config in regrow is a tree of dataclasses. `load_config` reads YAML, applies dotted
overrides, and builds the dataclasses with strict checks (unknown keys and wrong types are
errors that name the key and what is allowed), so validation happens in one place and a
typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from regrow.atomic import write_text_atomic
from regrow.errors import RegrowError

T = TypeVar("T")


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping from a file, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise RegrowError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RegrowError(f"config file {str(path)!r} is not valid YAML: {err}".splitlines()[0]) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RegrowError(f"config file {str(path)!r} must hold a mapping, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into (["a", "b", "c"], parsed value); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RegrowError(f"--set expects key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str], cls: type | None = None) -> dict[str, Any]:
    """Apply dotted overrides to a nested dict; with `cls`, keys must exist in the dataclass tree."""
    for text in overrides:
        keys, value = parse_override(text)
        if cls is not None:
            _check_key_path(cls, keys, text)
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
            hints = typing.get_type_hints(current)
            if key not in hints:
                prefix = ".".join(keys[:depth])
                allowed = ", ".join(f"{prefix + '.' if prefix else ''}{name}" for name in hints)
                raise RegrowError(f"unknown --set key {'.'.join(keys)!r}; allowed here: {allowed}")
            current = _strip_optional(hints[key])
        else:
            return  # inside a free-form mapping (model.config, data.mixture, schedule): any key


def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a mapping, checking keys and types recursively."""
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
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, key)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise RegrowError(f"config key {key!r} must be a mapping, got {value!r}")
        return dict(value)
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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "3e-4" as a string
            except ValueError:
                pass
        raise RegrowError(f"config key {key!r} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise RegrowError(f"config key {key!r} must be a string, got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """The plain-data form of a config dataclass (what is saved beside every output)."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_config(cls: type[T], path: str | os.PathLike | None, overrides: list[str] | None = None) -> T:
    """Read YAML (optional), apply `--set` overrides (keys checked against `cls`), build `cls`."""
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, list(overrides or []), cls)
    return from_dict(cls, data)


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
