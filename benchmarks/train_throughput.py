"""Tokens/s of `regrow train`'s step against a plain PyTorch loop over the same HF model.

Both run in this process on the same machine, batch and model (a ~10M non-embedding-parameter
Llama at seq 256 by default), in interleaved rounds; the figure is the median over rounds.
MFU = achieved FLOP/s (docs/ALGORITHMS.md §8) / a matrix-product peak measured in this run.

    python benchmarks/train_throughput.py [--steps 8] [--rounds 3] [--compile] [--device cpu]

On a GPU (`--device cuda`) the default model is a ~1B Llama at seq 2048 in bf16 with per-layer
torch.compile, and MFU is against the bf16 dense peak of the device (by its name). Under
torchrun the regrow trainer shards the model with FSDP2 and the figure is tokens/s per GPU
(the plain single-GPU loop is then not run):

    python benchmarks/train_throughput.py --device cuda
    torchrun --nproc-per-node 8 benchmarks/train_throughput.py --device cuda
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
from regrow.world import World  # noqa: E402

# ~1.1B parameters (TinyLlama's shape): the GPU benchmark's model
LLAMA_1B = {
    "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32,
    "num_key_value_heads": 4, "intermediate_size": 5632, "vocab_size": 32000, "tie_word_embeddings": False,
}
# bf16 dense tensor-core peaks (FLOP/s) by device name, from the vendors' data sheets
BF16_PEAKS = {"H200": 989e12, "H100 SXM": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12,
              "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12, "RTX 4090": 165e12}


def bf16_peak(name: str) -> float:
    for key, peak in BF16_PEAKS.items():
        if key in name:
            return peak
    return float("nan")


def regrow_trainer(tok, data, out, seq_len, batch, compile_, device, model_fields, precision) -> Trainer:
    cfg = from_dict(RunConfig, {
        "out_dir": str(out), "tokenizer": str(tok), "model": {"config": dict(model_fields, max_position_embeddings=seq_len)},
        "data": {"path": str(data), "mixture": {"code": 1.0}, "seq_len": seq_len},
        "train": {"steps": 10**6, "batch_size": batch, "compile": compile_, "device": device, "progress": False,
                  "precision": precision},
        "schedule": {"name": "constant", "lr_max": 1e-4},
    })
    return Trainer(cfg)


def plain_loop(trainer: Trainer, batch: int, seq_len: int, precision: str):
    """The baseline: the same HF model, HF's own loss (labels=), torch's default AdamW, clipping."""
    model = type(trainer.model)(trainer.model.config).to(trainer.device)
    model.load_state_dict(trainer.model.state_dict())
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    device = trainer.device

    def step():
        ids = torch.randint(0, vocab, (batch, seq_len), generator=gen).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round and variant")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None, help="sequences per step and GPU (default 8 on CPU, 4 on CUDA)")
    parser.add_argument("--seq-len", type=int, default=None, help="default 256 on CPU, 2048 on CUDA")
    parser.add_argument("--compile", action="store_true", help="also time regrow with train.compile (always on CUDA)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work", default=None, help="folder for the tokenizer and data (default: temporary)")
    args = parser.parse_args()

    cuda = args.device == "cuda"
    world = World.from_env()
    batch, seq_len = args.batch or (4 if cuda else 8), args.seq_len or (2048 if cuda else 256)
    model_fields, precision = (LLAMA_1B, "bf16") if cuda else (LLAMA_10M, "fp32")
    work = Path(args.work or tempfile.mkdtemp(prefix="regrow-bench-"))
    tok, data = make_data(work)  # (every rank makes the same folders: they are tiny)
    tokens_per_step = batch * seq_len  # per process
    first = regrow_trainer(tok, data, work / f"r1-{world.rank}", seq_len, batch * world.world_size, cuda, args.device,
                           model_fields, precision)
    variants = {"regrow+compile" if cuda else "regrow": first}
    shape = model_shape(first.model)
    flops_per_token = first.flops_per_token
    steps = {name: (lambda t=t: t.train_step(t.step)) for name, t in variants.items()}
    if not world.distributed:
        steps["plain"] = plain_loop(first, batch, seq_len, precision)
    if args.compile and not cuda:
        variants["regrow+compile"] = regrow_trainer(tok, data, work / "r2", seq_len, batch, True, args.device, model_fields, precision)
        steps["regrow+compile"] = lambda t=variants["regrow+compile"]: t.train_step(t.step)
    for fn in steps.values():  # warm-up (and compilation)
        for _ in range(3):
            fn()
    per_round: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            per_round[name].append(tokens_per_step / median(timed(fn, args.steps)))
    device_name = torch.cuda.get_device_name(first.device) if cuda else "cpu"
    peak = bf16_peak(device_name) if cuda else matmul_peak_flops()
    result = {
        "model": {"parameters": first.n_params,
                  "nonembedding_params": shape.nonembedding_params, "seq_len": seq_len, "batch_per_process": batch},
        "device": device_name, "processes": world.world_size, "threads": torch.get_num_threads(),
        "peak_gflops": peak / 1e9, "peak_kind": "bf16 data sheet" if cuda else "fp32 matmul measured in this run",
    }
    base = median(per_round["plain"]) if "plain" in per_round else float("nan")
    for name, values in per_round.items():
        tps = median(values)  # per process (per GPU)
        result[name] = {
            "tokens_per_s_per_process": round(tps, 1),
            "ratio_vs_plain": round(tps / base, 3) if base == base else None,
            "mfu": round(tps * flops_per_token / peak, 3),
        }
    if world.is_main:
        print(json.dumps(result, indent=2))
    world.stop()


if __name__ == "__main__":
    main()
