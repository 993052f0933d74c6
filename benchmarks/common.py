"""Helpers shared by the benchmarks: a real tokenizer and data folder, a ~10M Llama recipe, timing."""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path

import torch

from regrow.data.prepare import PrepareOptions, prepare_domain
from regrow.data.sources import SourceRecord, iter_builtin
from regrow.data.tokenizer import load_tokenizer, train_bpe

# ~10M non-embedding parameters: 6 layers x (4 * 384^2 + 3 * 384 * 1024)
LLAMA_10M = {
    "model_type": "llama", "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 6,
    "num_key_value_heads": 6, "intermediate_size": 1024, "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}


def make_data(work: Path, vocab_size: int = 4096) -> tuple[Path, Path]:
    """A tokenizer and a `code` domain built from the standard library (cached in `work`)."""
    tok_dir, data_dir = work / "tokenizer", work / "data"
    if not (tok_dir / "tokenizer.json").is_file():
        train_bpe(itertools.islice(iter_builtin("stdlib-code", SourceRecord()), 200), vocab_size, tok_dir)
    if not (data_dir / "manifest.json").is_file():
        record = SourceRecord()
        docs = itertools.islice(iter_builtin("stdlib-code", record), 300)
        prepare_domain(docs, record, load_tokenizer(tok_dir), str(tok_dir), data_dir, "code",
                       PrepareOptions(val_fraction=0.05, progress=False))
    return tok_dir, data_dir


def matmul_peak_flops(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 10) -> float:
    """Peak FLOP/s of this machine for dense matrix products of `dtype` (best of several)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)
