"""Tokenization MB/s of `regrow data prepare` and sampler tokens/s against training tokens/s.

Tokenization: the real prepare path (worker pool, split, memmap writing) over the books of
../shared/data when present (else standard-library code), with 1 worker and with all cores.
Sampler: batches of the ~10M Llama benchmark's shape per second, against that model's training
throughput measured in the same run (target: >= 100x).

    python benchmarks/data_throughput.py [--text DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_data, median, timed  # noqa: E402
from train_throughput import regrow_trainer  # noqa: E402

from regrow.data.prepare import prepare_domain  # noqa: E402
from regrow.data.sampler import MixtureSampler  # noqa: E402
from regrow.data.sources import SourceRecord, iter_documents  # noqa: E402
from regrow.data.store import TokenStore  # noqa: E402
from regrow.data.tokenizer import load_tokenizer, train_bpe  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def tokenization(texts: list[str], work: Path, workers: int) -> dict:
    tok_dir = work / "text_tokenizer"
    if not tok_dir.is_dir():
        train_bpe(iter_documents(texts, SourceRecord(), unit="paragraph"), 8192, tok_dir)
    tokenizer = load_tokenizer(tok_dir)
    record = SourceRecord()
    docs = list(iter_documents(texts, record, unit="paragraph"))  # read once: time the tokenizing path
    start = time.perf_counter()
    info = prepare_domain(docs, record, tokenizer, str(tok_dir), work / f"store{workers}", "text", 0.01, workers, progress=False)
    seconds = time.perf_counter() - start
    tokens = info["splits"]["train"]["tokens"] + info["splits"]["validation"]["tokens"]
    return {"workers": workers, "mb": round(info["bytes"] / 1e6, 2), "seconds": round(seconds, 2),
            "mb_per_s": round(info["bytes"] / 1e6 / seconds, 2), "tokens_per_s": round(tokens / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", nargs="*", default=None, help="text files or folders to tokenize")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="regrow-bench-data-"))
    texts = args.text or ([str(SHARED / "en"), str(SHARED / "de")] if SHARED.is_dir() else None)
    result = {}
    if texts:
        result["tokenization"] = [tokenization(texts, work, 1), tokenization(texts, work, os.cpu_count() or 1)]

    tok, data = make_data(work)
    sampler = MixtureSampler(TokenStore(data), {"code": 1.0}, args.seq_len, args.batch, seed=0)
    counter = iter(range(10**9))
    sample_times = timed(lambda: sampler.batch(next(counter), 0), 200)
    sampler_tps = args.batch * args.seq_len / median(sample_times)
    trainer = regrow_trainer(tok, data, work / "run", args.seq_len, args.batch, False, "cpu")
    for _ in range(2):
        trainer.train_step(0)
    train_tps = args.batch * args.seq_len / median(timed(lambda: trainer.train_step(0), 5))
    result["sampler"] = {"tokens_per_s": round(sampler_tps), "train_tokens_per_s": round(train_tps),
                         "ratio_vs_training": round(sampler_tps / train_tps, 1)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
