"""Tokenization MB/s and peak memory of `regrow data prepare`, and sampler tokens/s.

Tokenization: the real `regrow data prepare` command (reading a .jsonl.zst corpus made of the
English and German books built into regrow (builtin:en, builtin:de), decompression, JSON, tokenization, sharded
writing) with each engine, 1 and 2 workers; MB/s of text from the manifest's own timing. The
baseline, measured in the same run on the same documents: plain HF `tokenizers`
(`encode_batch_fast`), one thread and all cores. Target: >= 5 MB/s on 2 cores.

Memory: a synthetic corpus of --rss-gb GB of text (the books' paragraphs in random documents,
zstd-compressed JSONL) prepared with 2 workers; the process tree's peak memory sampled every
0.2 s: proportional set size summed (shared pages counted once) and the largest single RSS.
Target: <= 1 GiB on a >= 4 GB corpus.

Sampler: batches of the ~10M Llama benchmark's shape per second, against that model's training
throughput measured in the same run (target: >= 100x).

    python benchmarks/data_throughput.py [--mb 48] [--rss-gb 4] [--skip-sampler]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LLAMA_10M, make_data, median, timed  # noqa: E402

from regrow.data.sources import ReadOptions, SourceRecord, iter_documents  # noqa: E402
from regrow.data.tokenizer import train_bpe  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


def paragraphs() -> list[str]:
    return list(iter_documents(["builtin:en", "builtin:de"], SourceRecord(), ReadOptions(unit="paragraph")))


def write_corpus(path: Path, pool: list[str], text_bytes: float, seed: int) -> int:
    """Documents of 2-12 random paragraphs (each numbered, so none repeats) as .jsonl.zst; bytes of text."""
    import zstandard

    rnd = random.Random(seed)
    size = count = 0
    with open(path, "wb") as handle, zstandard.ZstdCompressor(level=1).stream_writer(handle) as out:
        lines = []
        while size < text_bytes:
            doc = f"{count}. " + "\n\n".join(rnd.choices(pool, k=rnd.randint(2, 12)))
            lines.append(json.dumps({"text": doc}, ensure_ascii=False))
            size += len(doc.encode())
            count += 1
            if len(lines) == 1000:
                out.write(("\n".join(lines) + "\n").encode())
                lines = []
        out.write(("\n".join(lines) + "\n").encode() if lines else b"")
    return size


def plain_hf(tok_dir: Path, docs: list[str], parallel: bool) -> float:
    """MB/s of HF tokenizers' own batch encoding of the documents (one thread or all cores)."""
    code = ("import json, os, sys, time; from tokenizers import Tokenizer; "
            "docs = [json.loads(l)['text'] for l in open(sys.argv[2])]; tok = Tokenizer.from_file(sys.argv[1]); "
            "t = time.perf_counter(); [tok.encode_batch_fast(docs[i:i + 256], add_special_tokens=False) "
            "for i in range(0, len(docs), 256)]; print(sum(len(d.encode()) for d in docs) / 1e6 / "
            "(time.perf_counter() - t))")
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
        handle.write("".join(json.dumps({"text": d}) + "\n" for d in docs))
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true" if parallel else "false",
           "RAYON_NUM_THREADS": str(os.cpu_count() if parallel else 1)}
    out = subprocess.run([sys.executable, "-c", code, str(tok_dir / "tokenizer.json"), handle.name], env=env,
                         capture_output=True, text=True, check=True)
    os.unlink(handle.name)
    return float(out.stdout.strip())


def prepare(corpus: Path, tok_dir: Path, out: Path, engine: str, workers: int) -> tuple[dict, dict]:
    """Run `regrow data prepare`; (the domain's manifest entry, peak memory of the process tree)."""
    command = [sys.executable, "-m", "regrow", "data", "prepare", str(corpus), "--domain", "d", "--tokenizer",
               str(tok_dir), "--out", str(out), "--engine", engine, "--workers", str(workers), "--no-progress"]
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(SRC)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    peak = {"pss_sum": 0, "rss_max": 0, "rss_sum": 0}
    watcher = threading.Thread(target=watch, args=(process.pid, peak, process), daemon=True)
    watcher.start()
    stdout, stderr = process.communicate()
    watcher.join()
    if process.returncode:
        raise SystemExit(f"prepare failed: {stderr}")
    return json.loads((out / "manifest.json").read_text())["domains"]["d"], peak


def watch(pid: int, peak: dict, process) -> None:
    root = psutil.Process(pid)
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            infos = [p.memory_full_info() for p in tree]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            time.sleep(0.05)
            continue
        peak["pss_sum"] = max(peak["pss_sum"], sum(i.pss for i in infos))
        peak["rss_sum"] = max(peak["rss_sum"], sum(i.rss for i in infos))
        peak["rss_max"] = max(peak["rss_max"], max(i.rss for i in infos))
        time.sleep(0.2)


def tokenization(work: Path, pool: list[str], mb: float) -> dict:
    tok_dir = work / "text_tokenizer"
    train_bpe(iter(pool), 8192, tok_dir)
    corpus = work / "books.jsonl.zst"
    write_corpus(corpus, pool, mb * 1e6, seed=0)
    docs = [d for d in iter_documents([str(corpus)], SourceRecord())]
    baseline = {"threads_1": round(plain_hf(tok_dir, docs, False), 2),
                f"threads_{os.cpu_count()}": round(plain_hf(tok_dir, docs, True), 2)}
    rows = []
    for engine in ("hf", "tiktoken"):
        for workers in (1, 2):
            info, peak = prepare(corpus, tok_dir, work / f"store-{engine}-{workers}", engine, workers)
            rate = info["bytes"] / 1e6 / info["seconds"]
            base = baseline["threads_1"] if workers == 1 else baseline[f"threads_{os.cpu_count()}"]
            rows.append({"engine": info["engine"]["name"], "workers": workers, "mb": round(info["bytes"] / 1e6, 1),
                         "mb_per_s": round(rate, 2), "vs_plain_hf": round(rate / base, 2),
                         "peak_pss_gib": round(peak["pss_sum"] / 2**30, 3)})
    same = len({tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((work / f"store-{e}-{w}" / "d").glob("*.bin")))
                for e in ("hf", "tiktoken") for w in (1, 2)}) == 1
    return {"plain_hf_mb_per_s": baseline, "prepare": rows, "identical_shards": same}


def memory(work: Path, pool: list[str], gb: float) -> dict:
    tok_dir = work / "text_tokenizer"
    corpus = work / "synthetic.jsonl.zst"
    start = time.perf_counter()
    text = write_corpus(corpus, pool, gb * 1e9, seed=1)
    made = time.perf_counter() - start
    info, peak = prepare(corpus, tok_dir, work / "store-big", "auto", 2)
    return {"text_gb": round(text / 1e9, 2), "compressed_gb": round(corpus.stat().st_size / 1e9, 2),
            "made_in_s": round(made), "engine": info["engine"]["name"], "seconds": round(info["seconds"]),
            "mb_per_s": round(info["bytes"] / 1e6 / info["seconds"], 2),
            "shards": sum(len(s) for s in info["shards"].values()),
            "peak_pss_sum_gib": round(peak["pss_sum"] / 2**30, 3), "peak_rss_max_gib": round(peak["rss_max"] / 2**30, 3),
            "peak_rss_sum_gib": round(peak["rss_sum"] / 2**30, 3)}


def sampler_rate(work: Path, batch: int, seq_len: int) -> dict:
    from train_throughput import regrow_trainer

    from regrow.data.sampler import MixtureSampler
    from regrow.data.store import TokenStore

    tok, data = make_data(work)
    sampler = MixtureSampler(TokenStore(data), {"code": 1.0}, seq_len, batch, seed=0)
    counter = iter(range(10**9))
    sampler_tps = batch * seq_len / median(timed(lambda: sampler.batch(next(counter), 0), 200))
    trainer = regrow_trainer(tok, data, work / "run", seq_len, batch, False, "cpu", LLAMA_10M, "fp32")
    for _ in range(2):
        trainer.train_step(0)
    train_tps = batch * seq_len / median(timed(lambda: trainer.train_step(0), 5))
    return {"tokens_per_s": round(sampler_tps), "train_tokens_per_s": round(train_tps),
            "ratio_vs_training": round(sampler_tps / train_tps, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=48, help="text of the throughput corpus (MB)")
    parser.add_argument("--rss-gb", type=float, default=4, help="text of the memory corpus (GB; 0 skips it)")
    parser.add_argument("--skip-sampler", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="regrow-bench-data-"))
    pool = paragraphs()
    result = {"tokenization": tokenization(work, pool, args.mb)}
    print(json.dumps(result, indent=2), flush=True)
    if args.rss_gb > 0:
        result["memory"] = memory(work, pool, args.rss_gb)
        print(json.dumps(result["memory"], indent=2), flush=True)
    if not args.skip_sampler:
        result["sampler"] = sampler_rate(work, args.batch, args.seq_len)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
