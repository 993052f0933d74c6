"""Document sources: text files and folders, JSONL, Parquet, Hugging Face `datasets` folders, and
the builtin stdlib domains.

Text and JSONL may be compressed (`.gz`, `.bz2`, `.xz`, `.zst`): they are decompressed while
read, never to disk or whole into memory (a JSONL file is read line by line, a text file split
into paragraphs paragraph by paragraph). Parquet is read in record batches. A folder made by
`datasets`' `save_to_disk`, or one `load_dataset` reads (a dataset card with `configs:`, or only
CSV / JSON / Arrow files), is read through the `datasets` library (streaming, no cache copy).
Inputs are files, folders (every supported file below, sorted), glob patterns, and `@LIST`
files naming one input per line. A source yields documents (strings) in a deterministic order
and records the size and sha256 of every file it read (of its bytes on disk, computed while
streaming), so a prepared domain can say exactly what it was made from.
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

from regrow.data import corpora
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
    """What was read: path, size and checksum of each input file; bad lines skipped (with
    `skip_bad_lines`), the first few of them named."""

    files: list[dict] = field(default_factory=list)
    skipped_lines: int = 0
    first_skipped: list[str] = field(default_factory=list)

    def add(self, path: Path, data: bytes) -> None:
        self.files.append(
            {"path": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        )

    def add_digest(self, path: Path) -> None:
        """Checksum a file read by another library (Parquet, Arrow), streaming it in blocks."""
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
        self.files.append({"path": str(path), "bytes": size, "sha256": digest.hexdigest()})

    def describe(self, limit: int = 3) -> str:
        """The files read, for a message: 'a.jsonl (0 bytes), b.txt (2 bytes)' (the first few)."""
        named = [f"{f['path']} ({f['bytes']:,} bytes)" for f in self.files[:limit]]
        more = f" and {len(self.files) - limit} more" if len(self.files) > limit else ""
        return ", ".join(named) + more if named else "no file"

    def skip(self, where: str) -> None:
        self.skipped_lines += 1
        if len(self.first_skipped) < 5:
            self.first_skipped.append(where)


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


DATASET_SUFFIXES = {".csv", ".tsv", ".json", ".arrow"}  # read only through `datasets`, in a dataset folder


def kind_of(path: Path) -> str:
    """text, jsonl, parquet (from the name; a compression suffix is looked through) or dataset (a folder)."""
    if path.is_dir():
        return "dataset"
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


def is_dataset_folder(folder: Path) -> bool:
    """A folder for the `datasets` library: `save_to_disk` output, a dataset card declaring its
    data (`configs:` / `dataset_info:` in README.md's YAML header), or only files regrow does not
    read itself but `load_dataset` does (CSV, TSV, JSON, Arrow)."""
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        return True
    card = folder / "README.md"
    if card.is_file():
        with open(card, "rb") as handle:
            head = handle.read(1 << 16).decode("utf-8", "replace")
        if head.startswith("---") and any(line.split(":")[0] in ("configs", "dataset_info")
                                          for line in head.split("\n---", 1)[0].splitlines()[1:]):
            return True
    files = [p for p in folder.rglob("*") if p.is_file() and not _hidden(p, folder)]
    return bool(files) and not any(_supported(p) for p in files) and any(
        p.suffix.lower() in DATASET_SUFFIXES for p in files)


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files named directly, every supported file under named folders (sorted), dataset folders,
    the files a glob pattern matches (sorted; `**` recurses), the inputs an `@LIST` file names
    (one per line; blank lines and `#` comments skipped) and the archives of `builtin:NAME`
    (the shipped books, regrow.data.corpora)."""
    if not inputs:
        raise RegrowError("no input given; pass one or more files or folders")
    files: list[Path] = []
    for item in inputs:
        builtin = corpora.resolve(item)
        if builtin is not None:
            files.extend(builtin)
            continue
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
        if path.is_dir() and is_dataset_folder(path):
            files.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _supported(p) and not _hidden(p, path))
            if not found:
                allowed = sorted(TEXT_SUFFIXES | JSONL_SUFFIXES | PARQUET_SUFFIXES)
                raise RegrowError(f"input folder {item!r} holds no supported files ({', '.join(allowed)}, "
                                  f"text and JSONL also as {', '.join(COMPRESSED_SUFFIXES)}) and is no "
                                  "`datasets` folder")
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


def inputs_fingerprint(paths: list[Path]) -> str:
    """Names, sizes and modification times of every input file: what a resumed preparation
    must find unchanged (checksums would need a full read)."""
    listing = []
    for path in paths:
        members = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for member in members:
            stat = member.stat()
            listing.append(f"{member.resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(listing).encode("utf-8", "surrogateescape")).hexdigest()


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
    return io.BufferedReader(_ZstdFrames(raw, zstandard.ZstdDecompressor()), 1 << 20)


class _ZstdFrames(io.RawIOBase):
    """The content of every zstd frame of a stream, in order. Unlike zstandard's stream reader,
    a stream that ends inside a frame is an error (EOFError), not a shorter file."""

    def __init__(self, raw, decompressor):
        self.raw, self.decompressor = raw, decompressor
        self.frame, self.pending = decompressor.decompressobj(), b""
        self.open = False  # inside a frame whose end has not been read yet

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            chunk = self.raw.read(1 << 20)
            if not chunk:
                if self.open:
                    raise EOFError("the zstd stream ends inside a frame (the file is truncated)")
                return 0
            out = []
            while chunk:
                if self.frame.eof:  # the previous frame ended: the next starts here
                    self.frame = self.decompressor.decompressobj()
                out.append(self.frame.decompress(chunk))
                self.open = not self.frame.eof
                chunk = self.frame.unused_data if self.frame.eof else b""
            self.pending = b"".join(out)
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


_CORRUPT = (OSError, EOFError, zlib.error, lzma.LZMAError)


@dataclass(frozen=True)
class ReadOptions:
    """How inputs become documents: the JSONL field / column, text files whole or by paragraph,
    bad JSONL lines an error or counted and skipped, the split of a `datasets` folder."""

    text_field: str = "text"
    unit: str = "file"
    skip_bad_lines: bool = False
    split: str = "train"


def iter_documents(inputs: list[str], record: SourceRecord, options: ReadOptions = ReadOptions()) -> Iterator[str]:
    """Documents from files and folders, in order. Inputs are checked at once."""
    if options.unit not in DOCUMENT_UNITS:
        raise RegrowError(f"unknown document unit {options.unit!r}; allowed: {', '.join(DOCUMENT_UNITS)}")
    paths = expand_inputs(inputs)
    resolved = ReadOptions(options.text_field, effective_unit(paths, options.unit), options.skip_bad_lines,
                           options.split)
    return _documents(paths, record, resolved)


def _documents(paths: list[Path], record: SourceRecord, options: ReadOptions) -> Iterator[str]:
    for path in paths:
        kind = kind_of(path)
        if kind == "parquet":
            yield from _parquet_documents(path, options.text_field)
            record.add_digest(path)
            continue
        if kind == "dataset":
            yield from _dataset_documents(path, options)
            for member in sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path)):
                record.add_digest(member)
            continue
        with open(path, "rb") as handle:
            raw = _HashingReader(handle)
            stream = _decompressed(path, raw)
            try:
                if kind == "jsonl":
                    yield from _jsonl_documents(path, stream, options, record)
                elif options.unit == "paragraph":
                    yield from _paragraphs(path, stream)
                else:
                    yield from _whole_text(path, stream.read())
                size, sha256 = raw.finish()
            except _CORRUPT as err:
                compression = COMPRESSED_SUFFIXES.get(path.suffix.lower(), "input")
                raise RegrowError(f"input {str(path)!r} is a corrupt or truncated {compression} file (near byte "
                                  f"{raw.count} of {path.stat().st_size}): {str(err) or type(err).__name__}") from err
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


def _whole_text(path: Path, data: bytes) -> Iterator[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RegrowError(f"input {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start})") from err
    if text.strip():
        yield text


def _paragraphs(path: Path, stream) -> Iterator[str]:
    """Blank-line separated paragraphs (an empty line ends one; CRLF read as LF), read line by
    line: memory is one paragraph, not the file."""
    lines: list[str] = []
    offset = 0
    for raw_line in stream:
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise RegrowError(f"input {str(path)!r} is not UTF-8 text ({err.reason} at byte "
                              f"{offset + err.start})") from err
        offset += len(raw_line)
        if line.endswith("\r\n"):
            line = line[:-2] + "\n"
        if line == "\n":
            paragraph = "".join(lines).strip()
            lines = []
            if paragraph:
                yield paragraph
        else:
            lines.append(line)
    paragraph = "".join(lines).strip()
    if paragraph:
        yield paragraph


def _jsonl_documents(path: Path, stream, options: ReadOptions, record: SourceRecord) -> Iterator[str]:
    """One document per line, read line by line (memory: one line). A bad line is an error, or
    counted and skipped with `skip_bad_lines`."""
    for number, raw_line in enumerate(stream, start=1):
        problem = None
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as err:
            problem = f"is not UTF-8 text ({err.reason} at byte {err.start} of the line)"
        else:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                problem = f"is not valid JSON: {err.msg}"
            else:
                if not isinstance(row, dict) or options.text_field not in row:
                    problem = f"has no field {options.text_field!r} (set --text-field)"
        if problem is not None:
            if not options.skip_bad_lines:
                raise RegrowError(f"{path}:{number} {problem}; --skip-bad-lines counts and skips such lines")
            record.skip(f"{path}:{number}")
            continue
        text = row[options.text_field]
        if isinstance(text, str) and text.strip():
            yield text


def _parquet_documents(path: Path, text_field: str) -> Iterator[str]:
    """The column's texts, one record batch at a time (memory: a batch, not the file)."""
    import pyarrow.parquet as pq
    import pyarrow.types as pa_types

    try:
        table = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise RegrowError(f"input {str(path)!r} is not a readable Parquet file: {err}") from err
    with table:
        if text_field not in table.schema_arrow.names:
            raise RegrowError(
                f"Parquet file {str(path)!r} has no column {text_field!r}; columns: "
                f"{', '.join(table.schema_arrow.names)} (set --text-field)"
            )
        column = table.schema_arrow.field(text_field).type
        if not (pa_types.is_string(column) or pa_types.is_large_string(column) or str(column) == "string_view"):
            texts = [f.name for f in table.schema_arrow if pa_types.is_string(f.type) or pa_types.is_large_string(f.type)]
            raise RegrowError(f"Parquet file {str(path)!r}: column {text_field!r} holds {column}, not text; set "
                              f"--text-field to a text column ({', '.join(texts) or 'the file has none'})")
        try:
            for batch in table.iter_batches(columns=[text_field], batch_size=1024):
                yield from _texts(batch.column(0).to_pylist())
        except OSError as err:
            raise RegrowError(f"input {str(path)!r} is a damaged Parquet file: {err}") from err


def _texts(values) -> Iterator[str]:
    for text in values:
        if isinstance(text, str) and text.strip():
            yield text


def _dataset_documents(folder: Path, options: ReadOptions) -> Iterator[str]:
    """The texts of a `datasets` folder: `load_from_disk` for `save_to_disk` output (memory-mapped
    Arrow), else `load_dataset(folder, streaming=True)` (read in place, no cache copy)."""
    import datasets

    try:
        if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
            data = datasets.load_from_disk(str(folder))
        else:
            data = datasets.load_dataset(str(folder), streaming=True)
    except Exception as err:  # noqa: BLE001  (datasets raises many types for a bad folder)
        first = (str(err).splitlines() or [type(err).__name__])[0][:300]
        raise RegrowError(f"dataset folder {str(folder)!r} could not be read by `datasets`: {first}") from err
    if isinstance(data, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if options.split not in data:
            raise RegrowError(f"dataset folder {str(folder)!r} has no split {options.split!r}; it has: "
                              f"{', '.join(data)} (set --dataset-split)")
        data = data[options.split]
    columns = data.column_names
    if columns is None:  # a streamed dataset learns its columns from its first rows
        columns = list(next(iter(data.take(1)), {}).keys())
    if options.text_field not in columns:
        raise RegrowError(f"dataset folder {str(folder)!r} has no field {options.text_field!r}; fields: "
                          f"{', '.join(columns)} (set --text-field)")
    for batch in data.select_columns([options.text_field]).iter(batch_size=256):
        yield from _texts(batch[options.text_field])


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
