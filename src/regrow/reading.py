"""Reading the text files regrow is given or wrote: one line naming the file and what is wrong.

Every YAML or JSON file goes through here, so a missing, binary, non-UTF-8, malformed or
ambiguous file (a key given twice: YAML and JSON silently keep the last) is refused the same
way everywhere, with exit code 2 and never a traceback.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import yaml

from regrow.errors import RegrowError, UnreadableFile


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A UTF-8 text file's contents; refuses a missing file, a folder, binary data and other encodings."""
    path = Path(path)
    if not path.exists():
        raise UnreadableFile(f"{what} {str(path)!r} does not exist")
    if not path.is_file():
        raise UnreadableFile(f"{what} {str(path)!r} is a folder; a file is expected here")
    data = path.read_bytes()
    if b"\x00" in data:
        raise UnreadableFile(f"{what} {str(path)!r} is a binary file; a UTF-8 text file is expected")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UnreadableFile(f"{what} {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start})") from err


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that names one key twice."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class names it
                duplicate = False
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicated key {key!r} (line {key_node.start_mark.line + 1}); each key may appear once",
                    key_node.start_mark)
            seen[key] = True
        return super().construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:map", _UniqueKeyLoader.construct_yaml_map)


def parse_yaml(text: str) -> Any:
    """YAML text -> plain data (safe loader: no objects are built); duplicated keys are refused."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def _yaml_problem(err: yaml.YAMLError) -> str:
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem:
        return f"{problem}" + (f" (line {mark.line + 1})" if mark is not None and "line" not in problem else "")
    return str(err).splitlines()[0]


def read_yaml(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    """A YAML mapping from a file (empty file: {}); names the file and the problem otherwise."""
    text = read_text(path, what)
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as err:
        raise UnreadableFile(f"{what} {str(path)!r} is not valid YAML: {_yaml_problem(err)}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UnreadableFile(f"{what} {str(path)!r} must hold a mapping, got {type(data).__name__}")
    return data


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicated key {key!r}; each key may appear once")
        out[key] = value
    return out


def parse_json(text: str) -> Any:
    """JSON text -> data; duplicated keys are refused (ValueError)."""
    return json.loads(text, object_pairs_hook=_unique_pairs)


def read_json(path: str | os.PathLike, what: str = "file", keys: tuple[str, ...] = ()) -> Any:
    """A JSON file's data (a mapping holding `keys` when they are given), or one line saying what is wrong."""
    text = read_text(path, what)
    try:
        data = parse_json(text)
    except ValueError as err:  # JSONDecodeError is a ValueError
        raise UnreadableFile(f"{what} {str(path)!r} is not valid JSON: {str(err).splitlines()[0]}") from err
    if keys:
        if not isinstance(data, dict):
            raise UnreadableFile(f"{what} {str(path)!r} must hold a JSON object, got {type(data).__name__}")
        missing = [k for k in keys if k not in data]
        if missing:
            raise UnreadableFile(f"{what} {str(path)!r} is damaged: it lacks {', '.join(map(repr, missing))}")
    return data


def check_finite(value: Any, key: str) -> None:
    """Refuse NaN and infinity anywhere inside `value` (free-form config mappings included)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise RegrowError(f"config key {key!r} is {value}; it must be a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, f"{key}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite(v, f"{key}[{i}]")
