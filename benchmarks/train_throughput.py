"""Tokens/s of `regrow train`'s step against a plain PyTorch loop over the same HF model.

Both run in this process on the same machine, batch and model (a ~10M non-embedding-parameter
Llama at seq 256 by default), in interleaved rounds; the figure is the median over rounds.
MFU = achieved FLOP/s (ALGORITHMS.md section 8) / a matrix-product peak measured in this run.

    python benchmarks/train_throughput.py [--steps 8] [--rounds 3] [--compile] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LLAMA_10M, make_data, matmul_peak_flops, median, timed  # noqa: E402

from regrow.config import from_dict  # noqa: E402
from regrow.models.flops import model_shape  # noqa: E402
from regrow.train.config import RunConfig  # noqa: E402
from regrow.train.trainer import Trainer  # noqa: E402


def regrow_trainer(tok, data, out, seq_len, batch, compile_, device) -> Trainer:
    cfg = from_dict(RunConfig, {
        "out_dir": str(out), "tokenizer": str(tok), "model": {"config": dict(LLAMA_10M, max_position_embeddings=seq_len)},
        "data": {"path": str(data), "mixture": {"code": 1.0}, "seq_len": seq_len},
        "train": {"steps": 10**6, "batch_size": batch, "compile": compile_, "device": device, "progress": False},
        "schedule": {"name": "constant", "lr_max": 1e-4},
    })
    return Trainer(cfg)


def plain_loop(trainer: Trainer, batch: int, seq_len: int):
    """The baseline: the same HF model, HF's own loss (labels=), torch's default AdamW, clipping."""
    model = type(trainer.model)(trainer.model.config).to(trainer.device)
    model.load_state_dict(trainer.model.state_dict())
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)

    def step():
        ids = torch.randint(0, vocab, (batch, seq_len), generator=gen).to(trainer.device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round and variant")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--compile", action="store_true", help="also time regrow with train.compile")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default=None, help="folder for the tokenizer and data (default: temporary)")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="regrow-bench-"))
    tok, data = make_data(work)
    tokens_per_step = args.batch * args.seq_len
    variants = {"regrow": regrow_trainer(tok, data, work / "r1", args.seq_len, args.batch, False, args.device)}
    shape = model_shape(variants["regrow"].model)
    flops_per_token = variants["regrow"].flops_per_token
    steps = {"regrow": (lambda t=variants["regrow"]: t.train_step(t.step))}
    steps["plain"] = plain_loop(variants["regrow"], args.batch, args.seq_len)
    if args.compile:
        variants["regrow+compile"] = regrow_trainer(tok, data, work / "r2", args.seq_len, args.batch, True, args.device)
        steps["regrow+compile"] = lambda t=variants["regrow+compile"]: t.train_step(t.step)
    for fn in steps.values():  # warm-up (and compilation)
        for _ in range(3):
            fn()
    per_round: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            per_round[name].append(tokens_per_step / median(timed(fn, args.steps)))
    peak = matmul_peak_flops() if args.device == "cpu" else float("nan")
    result = {
        "model": {"nonembedding_params": shape.nonembedding_params, "seq_len": args.seq_len, "batch": args.batch},
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": peak / 1e9,
    }
    base = median(per_round["plain"])
    for name, values in per_round.items():
        tps = median(values)
        result[name] = {
            "tokens_per_s": round(tps, 1),
            "ratio_vs_plain": round(tps / base, 3),
            "mfu_vs_measured_peak": round(tps * flops_per_token / peak, 3),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
