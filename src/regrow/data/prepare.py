"""`regrow data prepare`: tokenize documents into one domain of a token store.

Documents are tokenized by a pool of worker processes (ordered, so the result does not depend
on the number of workers), assigned to train or validation by a hash of their text, and
streamed into a temporary folder that replaces the domain in one rename. The manifest is
rewritten atomically after that, so an interrupted prepare leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from regrow.atomic import atomic_dir, write_json_atomic
from regrow.data.sources import SourceRecord
from regrow.data.store import MANIFEST, read_manifest, token_dtype
from regrow.data.tokenizer import fingerprint, vocab_size_of
from regrow.errors import RegrowError
from regrow.paths import check_output_dir

CHUNK_BYTES = 1 << 20  # documents are sent to workers in batches of about this much text
_worker_tokenizer = None  # set once per worker process by _init_worker


def is_validation(text: str, val_fraction: float) -> bool:
    """Deterministic, order-independent split: a document's hash decides its split."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < val_fraction


def _init_worker(tokenizer_json: str) -> None:
    global _worker_tokenizer
    from tokenizers import Tokenizer

    _worker_tokenizer = Tokenizer.from_str(tokenizer_json)


def _encode_chunk(args: tuple[list[str], float, int, str]) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    docs, val_fraction, eos_id, dtype = args
    encodings = _worker_tokenizer.encode_batch_fast(docs, add_special_tokens=False)  # no offsets
    return _split_encoded(docs, [e.ids for e in encodings], val_fraction, eos_id, dtype)


def _split_encoded(docs, id_lists, val_fraction, eos_id, dtype):
    train, val = [], []
    for text, ids in zip(docs, id_lists):
        array = np.empty(len(ids) + 1, dtype=dtype)
        array[:-1] = ids
        array[-1] = eos_id
        (val if is_validation(text, val_fraction) else train).append(array)
    return train, val, sum(len(d.encode("utf-8")) for d in docs)


def _chunks(documents: Iterable[str]) -> Iterator[list[str]]:
    batch, size = [], 0
    for doc in documents:
        batch.append(doc)
        size += len(doc)
        if size >= CHUNK_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def prepare_domain(
    documents: Iterable[str],
    record: SourceRecord,
    tokenizer,
    tokenizer_path: str,
    data_dir: str | Path,
    domain: str,
    val_fraction: float = 0.01,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Tokenize `documents` into `data_dir/domain` and register it in the manifest."""
    if not domain or "/" in domain or domain.startswith("."):
        raise RegrowError(f"domain name {domain!r} is not allowed; use letters, digits, '-' and '_'")
    if not 0.0 <= val_fraction < 1.0:
        raise RegrowError(f"--val-fraction {val_fraction} is out of range; allowed: 0 <= f < 1")
    workers = max(1, workers or os.cpu_count() or 1)
    data_dir = Path(data_dir)
    vocab = vocab_size_of(tokenizer)
    dtype = token_dtype(vocab)
    eos_id = int(tokenizer.eos_token_id)
    tokenizer_info = {"path": str(tokenizer_path), "fingerprint": fingerprint(tokenizer), "vocab_size": vocab}
    check_output_dir(data_dir, "--out", own=lambda p: (p / MANIFEST).is_file(), what="a regrow data folder")
    manifest = _read_manifest(data_dir)
    _check_same_tokenizer(manifest, domain, tokenizer_info)
    target = data_dir / domain
    if target.exists() and (not target.is_dir() or domain not in manifest["domains"]):
        raise RegrowError(f"{str(target)!r} exists and is not a domain of {str(data_dir / MANIFEST)!r}; regrow "
                          "replaces only the domains it prepared: choose another --domain or remove it yourself")
    counts = {s: {"tokens": 0, "documents": 0} for s in ("train", "validation")}
    start = time.perf_counter()
    total_bytes = 0
    with atomic_dir(data_dir / domain) as tmp:
        files = {s: open(tmp / f"{s}.bin", "wb") for s in counts}
        bar = tqdm(desc=f"tokenizing {domain}", unit="B", unit_scale=True, disable=not progress)
        try:
            for train, val, nbytes in _encode_all(tokenizer, documents, val_fraction, eos_id, dtype.name, workers):
                for split, arrays in (("train", train), ("validation", val)):
                    for array in arrays:
                        files[split].write(array.tobytes())
                    counts[split]["tokens"] += sum(len(a) for a in arrays)
                    counts[split]["documents"] += len(arrays)
                total_bytes += nbytes
                bar.update(nbytes)
        finally:
            bar.close()
            for handle in files.values():
                handle.close()
        if counts["train"]["documents"] + counts["validation"]["documents"] == 0:
            raise RegrowError(f"the inputs for domain {domain!r} hold no text (empty files or fields)")
        if counts["train"]["documents"] == 0:
            raise RegrowError(f"every document of domain {domain!r} went to validation; lower --val-fraction")
        if val_fraction > 0 and counts["validation"]["documents"] == 0:
            raise RegrowError(
                f"domain {domain!r} got no validation document from {counts['train']['documents']} "
                f"documents at --val-fraction {val_fraction}; raise it or use --documents paragraph"
            )
        elapsed = time.perf_counter() - start
        info = {
            "dtype": dtype.name,
            "eos_id": eos_id,
            "val_fraction": val_fraction,
            "splits": counts,
            "bytes": total_bytes,
            "tokenizer": tokenizer_info,
            "sources": record.files,
            "seconds": round(elapsed, 3),
        }
        write_json_atomic(tmp / "domain.json", info)
        manifest["domains"][domain] = info
    write_json_atomic(data_dir / MANIFEST, manifest)
    return info


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


def _encode_all(tokenizer, documents, val_fraction, eos_id, dtype, workers):
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer: no worker pool, encode here
        for docs in _chunks(documents):
            ids = [tokenizer.encode(d, add_special_tokens=False) for d in docs]
            yield _split_encoded(docs, ids, val_fraction, eos_id, dtype)
        return
    if workers == 1:
        for docs in _chunks(documents):
            ids = [e.ids for e in backend.encode_batch_fast(docs, add_special_tokens=False)]
            yield _split_encoded(docs, ids, val_fraction, eos_id, dtype)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    env_before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker process
    try:
        with ctx.Pool(workers, initializer=_init_worker, initargs=(backend.to_str(),)) as pool:
            jobs = ((docs, val_fraction, eos_id, dtype) for docs in _chunks(documents))
            yield from pool.imap(_encode_chunk, jobs)
    finally:
        if env_before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = env_before
