"""Document sources: plain text files and folders, JSONL, Parquet, and the builtin stdlib domains.

A source yields documents (strings) in a deterministic order and records the sha256 of every
file it read, so a prepared domain can say exactly what it was made from.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from regrow.errors import RegrowError

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PARQUET_SUFFIXES = {".parquet"}
DOCUMENT_UNITS = ("auto", "file", "paragraph")
AUTO_PARAGRAPH_BELOW = 100  # `auto`: fewer text files than this are split into paragraphs
BUILTIN_DOMAINS = ("stdlib-prose", "stdlib-code")
_SKIPPED_STDLIB_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__", "dist-packages"}


@dataclass
class SourceRecord:
    """What was read: path, size and checksum of each input file."""

    files: list[dict] = field(default_factory=list)

    def add(self, path: Path, data: bytes) -> None:
        self.files.append(
            {"path": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        )


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files named directly, plus every supported file under named folders (sorted)."""
    if not inputs:
        raise RegrowError("no input given; pass one or more files or folders")
    supported = TEXT_SUFFIXES | JSONL_SUFFIXES | PARQUET_SUFFIXES
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in supported)
            if not found:
                raise RegrowError(
                    f"input folder {item!r} holds no supported files ({', '.join(sorted(supported))})"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise RegrowError(f"input {item!r} does not exist")
    return files


def effective_unit(paths: list[Path], unit: str) -> str:
    """`auto` -> `paragraph` when the text files are few (a book or two: whole files would give too few
    documents for a validation split), else `file`."""
    if unit != "auto":
        return unit
    texts = [p for p in paths if p.suffix.lower() not in JSONL_SUFFIXES | PARQUET_SUFFIXES]
    return "paragraph" if 0 < len(texts) < AUTO_PARAGRAPH_BELOW else "file"


def _split_paragraphs(text: str) -> list[str]:
    parts = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n")]
    return [p for p in parts if p]


def iter_documents(
    inputs: list[str],
    record: SourceRecord,
    text_field: str = "text",
    unit: str = "file",
) -> Iterator[str]:
    """Documents from files and folders; `unit` says whether a text file is one document or
    one per blank-line-separated paragraph (useful for books). Inputs are checked at once."""
    if unit not in DOCUMENT_UNITS:
        raise RegrowError(f"unknown document unit {unit!r}; allowed: {', '.join(DOCUMENT_UNITS)}")
    paths = expand_inputs(inputs)
    return _documents(paths, record, text_field, effective_unit(paths, unit))


def _documents(paths: list[Path], record: SourceRecord, text_field: str, unit: str) -> Iterator[str]:
    for path in paths:
        data = path.read_bytes()
        record.add(path, data)
        suffix = path.suffix.lower()
        if suffix in JSONL_SUFFIXES:
            yield from _jsonl_documents(path, data, text_field)
        elif suffix in PARQUET_SUFFIXES:
            yield from _parquet_documents(path, data, text_field)
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise RegrowError(f"input {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start})") from err
            if unit == "paragraph":
                yield from _split_paragraphs(text)
            elif text.strip():
                yield text


def _jsonl_documents(path: Path, data: bytes, text_field: str) -> Iterator[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RegrowError(f"input {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise RegrowError(f"{path}:{number} is not valid JSON: {err.msg}") from err
        if not isinstance(row, dict) or text_field not in row:
            raise RegrowError(f"{path}:{number} has no field {text_field!r} (set --text-field)")
        text = row[text_field]
        if isinstance(text, str) and text.strip():
            yield text


def _parquet_documents(path: Path, data: bytes, text_field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(io.BytesIO(data))
    except Exception as err:  # pyarrow raises several types for a bad file
        raise RegrowError(f"input {str(path)!r} is not a readable Parquet file: {err}") from err
    if text_field not in table.schema_arrow.names:
        raise RegrowError(
            f"Parquet file {str(path)!r} has no column {text_field!r}; columns: "
            f"{', '.join(table.schema_arrow.names)} (set --text-field)"
        )
    for batch in table.iter_batches(columns=[text_field], batch_size=1024):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str) and text.strip():
                yield text


def stdlib_files() -> list[Path]:
    """The Python standard library's own modules, without tests and third-party packages."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(
        p
        for p in root.rglob("*.py")
        if not (_SKIPPED_STDLIB_DIRS & set(p.relative_to(root).parts[:-1]))
    )


def _docstring_nodes(tree: ast.AST) -> list[ast.Constant]:
    nodes = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    nodes.append(body[0].value)
    return nodes


def iter_builtin(name: str, record: SourceRecord) -> Iterator[str]:
    """`stdlib-prose`: English docstrings of the standard library, one document each.
    `stdlib-code`: each stdlib module's source with its docstrings removed."""
    if name not in BUILTIN_DOMAINS:
        raise RegrowError(f"unknown builtin domain {name!r}; allowed: {', '.join(BUILTIN_DOMAINS)}")
    for path in stdlib_files():
        data = path.read_bytes()
        try:
            source = data.decode("utf-8")
            tree = ast.parse(source)
        except (UnicodeDecodeError, SyntaxError, ValueError):
            continue
        record.add(path, data)
        nodes = _docstring_nodes(tree)
        if name == "stdlib-prose":
            for node in nodes:
                text = ast.get_docstring(_wrap(node), clean=True) or ""
                if len(text) >= 40:
                    yield text
        else:
            lines = source.splitlines(keepends=True)
            drop = set()
            for node in nodes:
                drop.update(range(node.lineno - 1, node.end_lineno))
            code = "".join(line for i, line in enumerate(lines) if i not in drop)
            if code.strip():
                yield code


def _wrap(node: ast.Constant) -> ast.Module:
    return ast.Module(body=[ast.Expr(value=node)], type_ignores=[])
