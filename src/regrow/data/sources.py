"""Document sources: plain text files and folders, JSONL, Parquet, and the builtin stdlib domains.

Text and JSONL may be compressed (`.gz`, `.bz2`, `.xz`, `.zst`): they are decompressed while
read, never to disk or whole into memory (a JSONL file is read line by line). Inputs are files,
folders (every supported file below, sorted), glob patterns, and `@LIST` files naming one input
per line. A source yields documents (strings) in a deterministic order and records the size and
sha256 of every file it read (of its bytes on disk, computed while streaming), so a prepared
domain can say exactly what it was made from.
"""

from __future__ import annotations

import ast
import bz2
import glob
import gzip
import hashlib
import io
import json
import lzma
import sysconfig
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from regrow.errors import RegrowError

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
PARQUET_SUFFIXES = {".parquet"}
COMPRESSED_SUFFIXES = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd"}
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


class _HashingReader(io.RawIOBase):
    """A file's bytes as read, counted and hashed on the way (the checksum of a streamed input)."""

    def __init__(self, handle):
        self.handle, self.sha256, self.count = handle, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        got = self.handle.readinto(buffer)
        if got:
            self.sha256.update(memoryview(buffer)[:got])
            self.count += got
        return got or 0

    def finish(self) -> tuple[int, str]:
        """Read what the decompressor left (trailing bytes) so the checksum covers the whole file."""
        buffer = bytearray(1 << 20)
        while self.readinto(buffer):
            pass
        return self.count, self.sha256.hexdigest()


def kind_of(path: Path) -> str:
    """text, jsonl or parquet, from the name (a compression suffix is looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in JSONL_SUFFIXES:
        return "jsonl"
    if last in PARQUET_SUFFIXES:
        return "parquet"
    return "text"


def _supported(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in TEXT_SUFFIXES | JSONL_SUFFIXES | (
        PARQUET_SUFFIXES if path.suffix.lower() not in COMPRESSED_SUFFIXES else set())


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files named directly, every supported file under named folders (sorted), the files a glob
    pattern matches (sorted; `**` recurses) and the inputs an `@LIST` file names (one per line;
    blank lines and `#` comments skipped)."""
    if not inputs:
        raise RegrowError("no input given; pass one or more files or folders")
    files: list[Path] = []
    for item in inputs:
        if item.startswith("@") and not Path(item).exists():
            listing = Path(item[1:])
            if not listing.is_file():
                raise RegrowError(f"input list {item[1:]!r} (from {item!r}) does not exist")
            lines = [line.strip() for line in listing.read_text(errors="replace").splitlines()]
            named = [line for line in lines if line and not line.startswith("#")]
            if not named:
                raise RegrowError(f"input list {str(listing)!r} names no input")
            files.extend(expand_inputs(named))
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _supported(p))
            if not found:
                allowed = sorted(TEXT_SUFFIXES | JSONL_SUFFIXES | PARQUET_SUFFIXES)
                raise RegrowError(f"input folder {item!r} holds no supported files ({', '.join(allowed)}, "
                                  f"text and JSONL also as {', '.join(COMPRESSED_SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(item):
            matched = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matched:
                raise RegrowError(f"input pattern {item!r} matches no file")
            files.extend(matched)
        else:
            raise RegrowError(f"input {item!r} does not exist")
    return files


def effective_unit(paths: list[Path], unit: str) -> str:
    """`auto` -> `paragraph` when the text files are few (a book or two: whole files would give too few
    documents for a validation split), else `file`."""
    if unit != "auto":
        return unit
    texts = [p for p in paths if kind_of(p) == "text"]
    return "paragraph" if 0 < len(texts) < AUTO_PARAGRAPH_BELOW else "file"


def _decompressed(path: Path, raw: _HashingReader):
    """A binary stream of the file's content (decompressed when its name says it is compressed)."""
    kind = COMPRESSED_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        return io.BufferedReader(raw, 1 << 20)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=io.BufferedReader(raw, 1 << 20), mode="rb")
    if kind == "bzip2":
        return bz2.BZ2File(io.BufferedReader(raw, 1 << 20))
    if kind == "xz":
        return lzma.LZMAFile(io.BufferedReader(raw, 1 << 20))
    try:
        import zstandard
    except ImportError:
        raise RegrowError(f"input {str(path)!r} is zstd-compressed: install the zstandard package "
                          "(pip install zstandard)") from None
    return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True), 1 << 20)


_CORRUPT = (OSError, EOFError, zlib.error, lzma.LZMAError)


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
        if kind_of(path) == "parquet":
            data = path.read_bytes()
            record.add(path, data)
            yield from _parquet_documents(path, data, text_field)
            continue
        with open(path, "rb") as handle:
            raw = _HashingReader(handle)
            stream = _decompressed(path, raw)
            try:
                if kind_of(path) == "jsonl":
                    yield from _jsonl_documents(path, stream, text_field)
                else:
                    yield from _text_documents(path, stream.read(), unit)
                size, sha256 = raw.finish()
            except _CORRUPT as err:
                kind = COMPRESSED_SUFFIXES.get(path.suffix.lower(), "input")
                raise RegrowError(f"input {str(path)!r} is a corrupt or truncated {kind} file (near byte {raw.count} of "
                                  f"{path.stat().st_size}): {str(err) or type(err).__name__}") from err
            except _zstd_errors() as err:
                raise RegrowError(f"input {str(path)!r} is a corrupt or truncated zstd file (near byte {raw.count} of "
                                  f"{path.stat().st_size}): {err}") from err
        record.files.append({"path": str(path), "bytes": size, "sha256": sha256})


def _zstd_errors() -> tuple[type[BaseException], ...]:
    try:
        import zstandard
    except ImportError:
        return ()
    return (zstandard.ZstdError,)


def _text_documents(path: Path, data: bytes, unit: str) -> Iterator[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RegrowError(f"input {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    if unit == "paragraph":
        yield from _split_paragraphs(text)
    elif text.strip():
        yield text


def _jsonl_documents(path: Path, stream, text_field: str) -> Iterator[str]:
    """One document per line, read line by line (memory: one line)."""
    for number, raw_line in enumerate(stream, start=1):
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise RegrowError(f"{path}:{number} is not UTF-8 text ({err.reason} at byte {err.start} of the line)") from err
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
