"""`regrow data prepare`: tokenize documents into one domain of a token store, resumably.

Documents stream from the inputs (never a whole corpus in memory), are optionally deduplicated,
and go in chunks of about 1 MB to a pool of worker processes: a bounded number of chunks in
flight, results in input order (so the output does not depend on the number of workers). Each
document goes to train or validation by a hash of its text and is appended, with an EOS, to
its split's shards of at most `shard_bytes`.

Everything is written to `DATA_DIR/.NAME.partial/`, whose progress file is updated at every
finished shard and every CHECKPOINT_SECONDS: the shards' lengths (synced to disk first) and how
many input documents they hold. Run again with the same arguments after a kill, preparation
truncates the shards to the last progress, reads past the documents already done (without
tokenizing them) and goes on: the shards are byte for byte those of an uninterrupted run. When
done the folder replaces the domain in one rename, then the manifest is rewritten atomically.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import shutil
import time
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from regrow.atomic import missing_ancestor, publish_dir, remove_empty, write_json_atomic
from regrow.data.engines import SAMPLE_BYTES, TokenEngine, choose_engine
from regrow.data.sources import SourceRecord
from regrow.data.store import MANIFEST, SPLITS, read_manifest, token_dtype
from regrow.data.tokenizer import fingerprint, vocab_size_of
from regrow.errors import RegrowError
from regrow.paths import check_output_dir
from regrow.pause_points import pause_point

CHUNK_BYTES = 1 << 20  # documents are sent to workers in batches of about this much text
DEFAULT_SHARD_BYTES = 1 << 30
CHECKPOINT_SECONDS = 30.0
PROGRESS = "progress.json"
PARTIAL_FORMAT = 1  # layout of the partial folder; one of another format is started over
_worker_engine: TokenEngine | None = None  # set once per worker process by _init_worker


@dataclass(frozen=True)
class PrepareOptions:
    """How a domain is prepared. `inputs_key` identifies the inputs (names, sizes, times and how
    they are read): a resumed preparation must find it, and every option here, unchanged."""

    val_fraction: float = 0.01
    workers: int | None = None
    shard_bytes: int = DEFAULT_SHARD_BYTES
    engine: str = "auto"
    dedup: bool = False
    inputs_key: str = ""
    progress: bool = True


def is_validation(text: str, val_fraction: float) -> bool:
    """Deterministic, order-independent split: a document's hash decides its split."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < val_fraction


def dedup_key(text: str) -> int:
    """64-bit hash of the normalised text (NFC, runs of whitespace as one space, ends stripped)."""
    normal = unicodedata.normalize("NFC", " ".join(text.split()))
    return int.from_bytes(hashlib.blake2b(normal.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


class SeenDocuments:
    """The dedup keys seen so far: 8 bytes per distinct document (a sorted array, merged from a
    small set), not a Python set of them all."""

    MERGE_AT = 1 << 18

    def __init__(self):
        self._sorted = np.zeros(0, dtype=np.uint64)
        self._recent: set[int] = set()

    def add(self, text: str) -> bool:
        """True when `text` is new (and remember it), False when it was seen before."""
        key = dedup_key(text)
        if key in self._recent:
            return False
        if len(self._sorted):
            at = int(np.searchsorted(self._sorted, np.uint64(key)))
            if at < len(self._sorted) and int(self._sorted[at]) == key:
                return False
        self._recent.add(key)
        if len(self._recent) >= self.MERGE_AT:
            self._sorted = np.union1d(self._sorted, np.fromiter(self._recent, dtype=np.uint64))
            self._recent = set()
        return True


class ShardWriter:
    """One split's token shards: tokens appended, a new file every `shard_tokens` tokens."""

    def __init__(self, folder: Path, split: str, shard_tokens: int, dtype: np.dtype):
        self.folder, self.split, self.shard_tokens, self.dtype = folder, split, shard_tokens, dtype
        self.done: list[dict] = []
        self.handle = None
        self.open_tokens = 0

    def _path(self) -> Path:
        return self.folder / f"{self.split}-{len(self.done):05d}.bin"

    def write(self, arrays: list[np.ndarray]) -> bool:
        """Append; True when a shard was finished."""
        finished = False
        for array in arrays:
            while len(array):
                if self.handle is None:
                    self.handle, self.open_tokens = open(self._path(), "wb"), 0
                part, array = array[: self.shard_tokens - self.open_tokens], array[self.shard_tokens - self.open_tokens :]
                self.handle.write(part.tobytes())
                self.open_tokens += len(part)
                if self.open_tokens == self.shard_tokens:
                    self._close()
                    finished = True
        return finished

    def _close(self) -> None:
        self.sync()
        self.handle.close()
        self.done.append({"file": self._path().name, "tokens": self.open_tokens})
        self.handle, self.open_tokens = None, 0

    def sync(self) -> dict:
        """Flush to disk; the state a progress file records."""
        if self.handle is not None:
            self.handle.flush()
            os.fsync(self.handle.fileno())
        return {"shards": list(self.done), "open_tokens": self.open_tokens}

    def restore(self, state: dict) -> bool:
        """Continue from a progress file's state: finished shards checked, the open one cut to its
        recorded length, later ones removed. False when the files do not match the state."""
        self.done = list(state["shards"])
        for shard in self.done:
            path = self.folder / shard["file"]
            if not path.is_file() or path.stat().st_size != shard["tokens"] * self.dtype.itemsize:
                return False
        self.open_tokens = int(state["open_tokens"])
        keep = {s["file"] for s in self.done} | ({self._path().name} if self.open_tokens else set())
        for stale in self.folder.glob(f"{self.split}-*.bin"):
            if stale.name not in keep:
                stale.unlink()
        if self.open_tokens:
            path = self._path()
            if not path.is_file() or path.stat().st_size < self.open_tokens * self.dtype.itemsize:
                return False
            self.handle = open(path, "r+b")
            self.handle.truncate(self.open_tokens * self.dtype.itemsize)
            self.handle.seek(0, os.SEEK_END)
        return True

    def finish(self) -> list[dict]:
        if self.handle is not None:
            self._close()
        return self.done


def _init_worker(engine: TokenEngine) -> None:
    global _worker_engine
    _worker_engine = engine


def _encode_chunk(args: tuple[list[str], float, int, str]) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    docs, val_fraction, eos_id, dtype = args
    return _split_encoded(docs, _worker_engine.encode(docs), val_fraction, eos_id, dtype)


def _split_encoded(docs, id_arrays, val_fraction, eos_id, dtype):
    train, val = [], []
    for text, ids in zip(docs, id_arrays):
        array = np.empty(len(ids) + 1, dtype=dtype)
        array[:-1] = ids
        array[-1] = eos_id
        (val if is_validation(text, val_fraction) else train).append(array)
    return train, val, sum(len(d.encode("utf-8", "surrogatepass")) for d in docs)


class _Counted:
    """An iterator of documents that counts how many it has given."""

    def __init__(self, documents: Iterable[str]):
        self._documents, self.count = iter(documents), 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        doc = next(self._documents)
        self.count += 1
        return doc


def _head(documents: Iterator[str], nbytes: int) -> list[str]:
    """The first documents, about `nbytes` of text (the sample an engine is checked on)."""
    sample, size = [], 0
    for doc in documents:
        sample.append(doc)
        size += len(doc)
        if size >= nbytes:
            break
    return sample


def prepare_domain(
    documents: Iterable[str],
    record: SourceRecord,
    tokenizer,
    tokenizer_path: str,
    data_dir: str | Path,
    domain: str,
    options: PrepareOptions = PrepareOptions(),
) -> dict:
    """Tokenize `documents` into `data_dir/domain` (sharded) and register it in the manifest."""
    if not domain or "/" in domain or domain.startswith("."):
        raise RegrowError(f"domain name {domain!r} is not allowed; use letters, digits, '-' and '_'")
    if not 0.0 <= options.val_fraction < 1.0:
        raise RegrowError(f"--val-fraction {options.val_fraction} is out of range; allowed: 0 <= f < 1")
    workers = max(1, options.workers or os.cpu_count() or 1)
    data_dir = Path(data_dir)
    vocab = vocab_size_of(tokenizer)
    dtype = token_dtype(vocab)
    if options.shard_bytes < 1024:
        raise RegrowError(f"--shard-size is {options.shard_bytes} bytes; it must be at least 1 KiB")
    eos_id = int(tokenizer.eos_token_id)
    tokenizer_info = {"path": str(tokenizer_path), "fingerprint": fingerprint(tokenizer), "vocab_size": vocab}
    check_output_dir(data_dir, "--out", own=_is_data_dir, what="a regrow data folder")
    manifest = _read_manifest(data_dir)
    _check_same_tokenizer(manifest, domain, tokenizer_info)
    target = data_dir / domain
    if target.exists() and (not target.is_dir() or domain not in manifest["domains"]):
        raise RegrowError(f"{str(target)!r} exists and is not a domain of {str(data_dir / MANIFEST)!r}; regrow "
                          "replaces only the domains it prepared: choose another --domain or remove it yourself")

    work = data_dir / f".{domain}.partial"
    key = hashlib.sha256(json.dumps({"format": PARTIAL_FORMAT, "dtype": dtype.name, "eos": eos_id,
                                     "tokenizer": tokenizer_info["fingerprint"],
                                     **{k: v for k, v in asdict(options).items() if k not in ("workers", "progress")}},
                                    sort_keys=True).encode()).hexdigest()
    shard_tokens = options.shard_bytes // dtype.itemsize
    created = missing_ancestor(data_dir)
    work.mkdir(parents=True, exist_ok=True)
    busy = (f"another `regrow data prepare` is writing domain {domain!r} into {str(data_dir)!r} right now; wait "
            "for it to finish (or prepare this one under another --domain)")
    with _locked(work, busy):  # held until the domain is in the manifest
        writers = {s: ShardWriter(work, s, shard_tokens, dtype) for s in SPLITS}
        state = _resume(work, key, writers)
        start = time.perf_counter()
        try:
            documents = iter(documents)
            sample = _head(documents, SAMPLE_BYTES)
            choice = choose_engine(tokenizer, options.engine, sample)
            stream = _Counted(itertools.chain(sample, documents))
            seen = SeenDocuments() if options.dedup else None
            done = state["documents"] if state else 0
            for doc in itertools.islice(stream, done):  # already tokenized before the kill: only read again
                if seen is not None:
                    seen.add(doc)
            if stream.count < done:
                raise RegrowError(f"the inputs hold {stream.count} documents, fewer than the {done} an interrupted "
                                  f"preparation already wrote; remove {str(work)!r} to start over")
            counts = state["splits"] if state else {s: {"tokens": 0, "documents": 0} for s in SPLITS}
            dropped = state["dedup"] if state else {"documents": 0, "bytes": 0}
            total_bytes = state["bytes"] if state else 0
            bar = tqdm(desc=f"tokenizing {domain}", unit="B", unit_scale=True, disable=not options.progress)
            last_save = time.monotonic()
            chunks = _chunks(stream, seen, dropped)
            try:
                for (train, val, nbytes), mark in _encoded(choice.engine, chunks, workers, options.val_fraction, eos_id,
                                                           dtype.name):
                    finished = writers["train"].write(train) | writers["validation"].write(val)
                    for split, arrays in (("train", train), ("validation", val)):
                        counts[split]["tokens"] += sum(len(a) for a in arrays)
                        counts[split]["documents"] += len(arrays)
                    total_bytes += nbytes
                    bar.update(nbytes)
                    if finished or time.monotonic() - last_save > CHECKPOINT_SECONDS:
                        _save_progress(work, key, mark, counts, total_bytes, writers)
                        last_save = time.monotonic()
                        pause_point("prepare-progress")
            finally:
                bar.close()
            shards = {s: w.finish() for s, w in writers.items()}
            _check_counts(domain, counts, options.val_fraction, record)
        except RegrowError:  # bad input: leave nothing behind (a kill or an OS error keeps the progress)
            for writer in writers.values():
                if writer.handle is not None:
                    writer.handle.close()
            shutil.rmtree(work, ignore_errors=True)
            remove_empty(data_dir, created)
            raise
        except OSError as err:  # the environment (a full disk): named with the folder being written
            if err.filename is None:
                raise OSError(err.errno, err.strerror or str(err), str(work)) from err
            raise
        info = {
            "dtype": dtype.name,
            "eos_id": eos_id,
            "val_fraction": options.val_fraction,
            "splits": counts,
            "shards": shards,
            "shard_bytes": options.shard_bytes,
            "bytes": total_bytes,
            "tokenizer": tokenizer_info,
            "engine": choice.to_dict(),
            "dedup": {"enabled": options.dedup, "documents_dropped": dropped["documents"],
                      "bytes_dropped": dropped["bytes"]},
            "skipped_lines": record.skipped_lines,
            "sources": record.files,
            "resumed_at_document": done,
            "seconds": round(time.perf_counter() - start, 3),
        }
        (work / PROGRESS).unlink(missing_ok=True)
        write_json_atomic(work / "domain.json", info)
        with _locked(data_dir):  # one manifest update at a time: every domain stays listed
            manifest = _read_manifest(data_dir)  # as other preparations into this folder may have left it
            _check_same_tokenizer(manifest, domain, tokenizer_info)
            publish_dir(work, target)
            manifest["domains"][domain] = info
            write_json_atomic(data_dir / MANIFEST, manifest)
        return info


@contextlib.contextmanager
def _locked(folder: Path, busy: str | None = None) -> Iterator[None]:
    """An exclusive advisory lock on a folder (flock on its descriptor), held for the block. With
    `busy`, a lock another process holds is that error at once; without, it is waited for. The
    kernel releases the lock when the process ends, however it ends (kill -9 included)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if busy else 0))
        except BlockingIOError:
            raise RegrowError(busy) from None
        yield
    finally:
        os.close(fd)


def _is_data_dir(folder: Path) -> bool:
    """A regrow data folder, or one holding only the partial folders of interrupted preparations."""
    if (folder / MANIFEST).is_file():
        return True
    entries = list(folder.iterdir())
    return bool(entries) and all(e.is_dir() and e.name.startswith(".") and e.name.endswith(".partial") for e in entries)


def _resume(work: Path, key: str, writers: dict[str, ShardWriter]) -> dict | None:
    """The progress of an interrupted preparation with the same key, its shards restored; else a
    fresh, empty partial folder (one of other arguments is discarded) and None."""
    progress = work / PROGRESS
    if progress.is_file():
        try:
            state = json.loads(progress.read_text())
            if state.get("key") == key and all(writers[s].restore(state["writers"][s]) for s in SPLITS):
                return state
        except (OSError, ValueError, KeyError, TypeError):
            pass
        for writer in writers.values():
            if writer.handle is not None:
                writer.handle.close()
            writer.__init__(writer.folder, writer.split, writer.shard_tokens, writer.dtype)
    for child in work.iterdir():  # emptied, not replaced: the folder itself carries the domain's lock
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    return None


def _save_progress(work: Path, key: str, mark: dict, counts: dict, total_bytes: int,
                   writers: dict[str, ShardWriter]) -> None:
    state = {"key": key, "documents": mark["documents"], "dedup": mark["dedup"], "splits": counts,
             "bytes": total_bytes, "writers": {s: w.sync() for s, w in writers.items()}}
    write_json_atomic(work / PROGRESS, state)


def _check_counts(domain: str, counts: dict, val_fraction: float, record: SourceRecord) -> None:
    if counts["train"]["documents"] + counts["validation"]["documents"] == 0:
        raise RegrowError(f"the inputs for domain {domain!r} hold no text (empty files or fields): {record.describe()}")
    if counts["train"]["documents"] == 0:
        raise RegrowError(f"every document of domain {domain!r} went to validation; lower --val-fraction")
    if val_fraction > 0 and counts["validation"]["documents"] == 0:
        raise RegrowError(
            f"domain {domain!r} got no validation document from {counts['train']['documents']} "
            f"documents at --val-fraction {val_fraction}; raise it or use --documents paragraph"
        )


def _read_manifest(data_dir: Path) -> dict:
    path = data_dir / MANIFEST
    if path.exists():
        return read_manifest(path)
    return {"version": 1, "domains": {}}


def _check_same_tokenizer(manifest: dict, domain: str, tokenizer_info: dict) -> None:
    for name, other in manifest["domains"].items():
        if name != domain and other["tokenizer"]["fingerprint"] != tokenizer_info["fingerprint"]:
            raise RegrowError(
                f"domain {name!r} in this data folder was tokenized with another tokenizer "
                f"({other['tokenizer']['path']}); all domains of one folder must share a tokenizer"
            )


def _chunks(stream: _Counted, seen: SeenDocuments | None, dropped: dict) -> Iterator[tuple[list[str], dict]]:
    """Batches of about CHUNK_BYTES of new documents, each with the progress mark after it (input
    documents read so far, duplicates dropped so far)."""
    batch, size = [], 0
    for doc in stream:
        if seen is not None and not seen.add(doc):
            dropped["documents"] += 1
            dropped["bytes"] += len(doc.encode("utf-8", "surrogatepass"))
            continue
        batch.append(doc)
        size += len(doc)
        if size >= CHUNK_BYTES:
            yield batch, {"documents": stream.count, "dedup": dict(dropped)}
            batch, size = [], 0
    if batch:
        yield batch, {"documents": stream.count, "dedup": dict(dropped)}


def _encoded(engine: TokenEngine, chunks, workers: int, val_fraction: float, eos_id: int, dtype: str):
    """(train arrays, validation arrays, bytes) per chunk, in order, with the chunk's mark; at most
    2 x workers chunks in flight, so memory does not grow with the corpus."""
    env_before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per process: --workers is the core count
    try:
        if workers == 1 or not engine.parallel:
            for docs, mark in chunks:
                yield _split_encoded(docs, engine.encode(docs), val_fraction, eos_id, dtype), mark
            return
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(engine,)) as pool:
            pending = collections.deque()
            for docs, mark in chunks:
                pending.append((pool.apply_async(_encode_chunk, ((docs, val_fraction, eos_id, dtype),)), mark))
                if len(pending) >= 2 * workers:
                    result, done = pending.popleft()
                    yield result.get(), done
            while pending:
                result, done = pending.popleft()
                yield result.get(), done
    finally:
        if env_before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = env_before
