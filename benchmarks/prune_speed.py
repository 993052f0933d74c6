"""Pruning cost against the baselines the issue sets, measured in the same run.

- activation / depth / magnitude: wall time of the whole `regrow prune` job (load, score,
  slice, check, save) over one forward pass across the same calibration tokens; peak RSS
  above the interpreter's baseline over the model's size in memory. Each job runs in a fresh
  process so peaks do not mix.
- sheared: median time of a mask-training step over a plain training step (forward, backward,
  AdamW) of the source model on the same batch.
- wanda / sparsegpt (50% per row and 2:4): the scoring time (calibration, statistics, solving)
  over the same forward pass (targets: <= 1.5x and <= 5x).
- `--source moe`: a Mixtral-style mixture of experts (8 experts, top-2) instead of the Llama;
  targets: half the experts only, and every width (experts, expert width, hidden, heads) halved.
- `--source hybrid`: a Granite-4-style hybrid (`granitemoehybrid`, dense variant: three Mamba-2
  layers to one attention layer, a shared MLP); targets: half the Mamba heads only, and every
  width (hidden, heads, Mamba heads, MLP) halved.
- `--source deltanet`: a Qwen3.5-style hybrid (`qwen3_5_text`: three gated-DeltaNet layers to one
  gated-attention layer, dense MLPs); targets: half the DeltaNet value heads only (one per key
  head), and every width (hidden, heads, DeltaNet key and value heads, MLP) halved.

Usage: python benchmarks/prune_speed.py [--source llama|moe|hybrid|deltanet] [--work DIR] [--hidden 768] [--layers 12] [--methods M ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import make_data, median  # noqa: E402

from regrow.models.hf import build_model  # noqa: E402


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def model_fields(args, vocab_size: int) -> dict:
    if args.source == "hybrid":
        return {"model_type": "granitemoehybrid", "hidden_size": args.hidden, "num_hidden_layers": args.layers,
                "num_attention_heads": args.heads, "num_key_value_heads": args.heads // 4, "num_local_experts": 0,
                "shared_intermediate_size": args.mlp, "layer_types": ["mamba", "mamba", "mamba", "attention"] * (args.layers // 4),
                "mamba_n_heads": 2 * args.hidden // 64, "mamba_d_head": 64, "mamba_n_groups": 1, "mamba_d_state": 64,
                "mamba_expand": 2, "mamba_chunk_size": 64, "position_embedding_type": "rope", "vocab_size": vocab_size,
                "max_position_embeddings": 512, "tie_word_embeddings": False}
    if args.source == "deltanet":
        return {"model_type": "qwen3_5_text", "hidden_size": args.hidden, "num_hidden_layers": args.layers,
                "num_attention_heads": args.heads, "num_key_value_heads": args.heads // 4, "head_dim": 64,
                "intermediate_size": args.mlp, "layer_types": (["linear_attention"] * 3 + ["full_attention"]) * (args.layers // 4),
                "linear_num_key_heads": args.hidden // 128, "linear_num_value_heads": args.hidden // 64,
                "linear_key_head_dim": 64, "linear_value_head_dim": 64, "vocab_size": vocab_size,
                "max_position_embeddings": 512, "tie_word_embeddings": False}
    if args.source == "moe":
        return {"model_type": "mixtral", "hidden_size": args.hidden, "num_hidden_layers": args.layers,
                "num_attention_heads": args.heads, "num_key_value_heads": args.heads // 4, "intermediate_size": args.mlp,
                "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": vocab_size,
                "max_position_embeddings": 512, "tie_word_embeddings": False}
    return {"model_type": "llama", "hidden_size": args.hidden, "num_hidden_layers": args.layers,
            "num_attention_heads": args.heads, "num_key_value_heads": args.heads // 4,
            "intermediate_size": args.mlp, "vocab_size": vocab_size, "max_position_embeddings": 512,
            "tie_word_embeddings": False}


def child(args) -> None:
    """Run inside a fresh process: one forward pass or one prune job; print JSON."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (library memory is not model memory)
    from transformers.models.llama import modeling_llama  # noqa: F401

    from regrow.compress.config import PruneConfig
    from regrow.compress.prune import prune
    from regrow.config import from_dict
    from regrow.data.sampler import MixtureSampler
    from regrow.data.store import TokenStore
    from regrow.models.hf import load_model

    torch.set_num_threads(os.cpu_count())
    baseline = rss_kib("VmRSS")
    work = Path(args.work)
    if args.child == "forward":
        model = load_model(work / "source").eval()
        sampler = MixtureSampler(TokenStore(work / "data"), {"code": 1.0}, args.seq_len, args.batch_size, 1, 0)
        batches = [sampler.batch(i)[0] for i in range(args.calibration_samples // args.batch_size)]
        passes = []
        with torch.inference_mode():
            model(input_ids=batches[0], use_cache=False)  # warm-up
            for _ in range(args.forward_repeats):
                start = time.perf_counter()
                for ids in batches:
                    model(input_ids=ids, use_cache=False)
                passes.append(time.perf_counter() - start)
        result = {"seconds": median(passes), "passes": passes, "model_bytes": sum(p.numel() * p.element_size() for p in model.parameters())}
    else:
        method, target = args.child.split(":", 1)
        out = work / f"pruned-{method}"
        shape = SPARSE_TARGETS.get(target, {"target": str(work / f"{target}.yaml")})
        cfg = from_dict(PruneConfig, {
            "model": str(work / "source"), "out": str(out), "method": method, "data": str(work / "data"), **shape,
            "seq_len": args.seq_len, "batch_size": args.batch_size,
            "calibration_samples": args.calibration_samples, "progress": False,
        })
        start = time.perf_counter()
        report = prune(cfg, echo=lambda _: None)
        seconds = time.perf_counter() - start
        kept = (report["target"]["fraction_kept"] if "target" in report
                else 1 - report["sparsity"]["zeros"] / report["sparsity"]["weights"])  # of the sparsified weights
        result = {"seconds": seconds, "scoring_seconds": report["wall_seconds"]["scoring"],
                  "peak_above_baseline_bytes": (rss_kib("VmHWM") - baseline) * 1024, "fraction_kept": kept}
    print("RESULT " + json.dumps(result))


SPARSE_TARGETS = {"half": {"sparsity": 0.5}, "2:4": {"pattern": "2:4"}}


def run_child(args, name: str) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--work", args.work, "--source", args.source, "--seq-len", str(args.seq_len),
           "--batch-size", str(args.batch_size), "--calibration-samples", str(args.calibration_samples),
           "--forward-repeats", str(args.forward_repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def sheared_step_ratio(args, data_dir: Path, vocab_size: int) -> tuple[float, float]:
    """(median sheared step, median plain step) in seconds, same model, batch and optimizer."""
    from regrow.compress.config import PruneConfig
    from regrow.compress.families import adapter_for
    from regrow.compress.methods import PruneContext
    from regrow.compress.methods.sheared import ShearedPruning
    from regrow.config import from_dict
    from regrow.data.sampler import MixtureSampler
    from regrow.data.store import TokenStore
    from regrow.models.evaluate import causal_lm_loss

    fields = model_fields(args, vocab_size) | {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 8,
                                               "num_key_value_heads": 2, "intermediate_size": 1024}
    sampler = MixtureSampler(TokenStore(data_dir), {"code": 1.0}, args.seq_len, args.batch_size, 1, 0)
    model = build_model(fields, 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0)
    plain = []
    for step in range(args.steps):
        start = time.perf_counter()
        inputs, targets = sampler.batch(step)
        causal_lm_loss(model, inputs, targets).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        plain.append(time.perf_counter() - start)
    adapter = adapter_for(model.config)
    source = adapter.shape(model.config)
    target = source.replace(hidden_size=256, num_attention_heads=4, num_key_value_heads=1, intermediate_size=512,
                            num_hidden_layers=4)
    cfg = from_dict(PruneConfig, {"model": "-", "out": "-", "method": "sheared", "progress": False,
                                  "sheared": {"steps": args.steps}})
    ctx = PruneContext(model, adapter, source, target, cfg, torch.device("cpu"), sampler)
    details = ShearedPruning().run(ctx).details
    return details["step_seconds_median"], median(plain[2:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", choices=("llama", "moe", "hybrid", "deltanet"), default="llama")
    parser.add_argument("--work")
    parser.add_argument("--child")
    parser.add_argument("--hidden", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--heads", type=int)
    parser.add_argument("--mlp", type=int, help="MLP width (the expert width of --source moe)")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--calibration-samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=12, help="sheared / plain training steps to time")
    parser.add_argument("--methods", nargs="*", help="only these methods (default: all)")
    parser.add_argument("--forward-repeats", type=int, default=3, help="forward passes timed (the median is the baseline)")
    args = parser.parse_args()
    defaults = {"llama": (768, 12, 12, 2048), "moe": (512, 8, 8, 1024), "hybrid": (512, 8, 8, 1024),
                "deltanet": (512, 8, 8, 1024)}[args.source]
    for key, value in zip(("hidden", "layers", "heads", "mlp"), defaults):
        setattr(args, key, getattr(args, key) or value)
    args.work = args.work or f"/tmp/regrow-bench-prune-{args.source}"
    if args.child:
        child(args)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tok_dir, data_dir = make_data(work)
    from regrow.data.tokenizer import load_tokenizer, vocab_size_of

    tokenizer = load_tokenizer(tok_dir)
    vocab = vocab_size_of(tokenizer)
    if not (work / "source" / "config.json").is_file():
        model = build_model(model_fields(args, vocab), 0)
        model.save_pretrained(work / "source")
        tokenizer.save_pretrained(work / "source")
    width = (f"hidden_size: {args.hidden // 2}\nnum_attention_heads: {args.heads // 2}\n"
             f"num_key_value_heads: {args.heads // 4}\n")
    width += {"moe": "num_experts: 4\nmoe_intermediate_size: ", "hybrid": f"mamba_num_heads: {args.hidden // 64}\n"
              "shared_expert_intermediate_size: ", "deltanet": f"linear_num_key_heads: {args.hidden // 256}\n"
              f"linear_num_value_heads: {args.hidden // 128}\nintermediate_size: "}.get(args.source, "intermediate_size: ")
    (work / "width.yaml").write_text(width + f"{args.mlp // 2}\n")
    (work / "mamba.yaml").write_text(f"mamba_num_heads: {args.hidden // 64}\n")  # half the heads: mamba_expand 1
    (work / "deltanet.yaml").write_text(f"linear_num_value_heads: {args.hidden // 128}\n")  # one per key head
    (work / "experts.yaml").write_text("num_experts: 4\n")
    (work / "depth.yaml").write_text(f"num_hidden_layers: {args.layers // 2}\n")

    forward = run_child(args, "forward")
    tokens = args.calibration_samples * args.seq_len
    print(f"model: {forward['model_bytes'] / 2**20:,.0f} MiB fp32; one forward over {tokens:,} calibration tokens: "
          f"{forward['seconds']:.2f} s (median of {', '.join(f'{s:.2f}' for s in forward['passes'])})")
    print(f"{'method target':<20}{'kept':>7}{'wall s':>9}{'x forward':>11}{'scoring x':>11}{'peak RSS MiB':>14}{'x model':>9}")
    jobs = [("activation", "width"), ("depth", "depth"), ("magnitude", "width"), ("wanda", "half"), ("wanda", "2:4"),
            ("sparsegpt", "half"), ("sparsegpt", "2:4"), ("magnitude-sparse", "half")]
    if args.source == "moe":
        jobs.insert(0, ("activation", "experts"))
    if args.source in ("hybrid", "deltanet"):
        jobs.insert(0, ("activation", "mamba" if args.source == "hybrid" else "deltanet"))
    for method, target in jobs:
        if args.methods and method not in args.methods:
            continue
        subprocess.run(["rm", "-rf", str(work / f"pruned-{method}")], check=True)
        r = run_child(args, f"{method}:{target}")
        print(f"{method + ' ' + target:<20}{r['fraction_kept']:>7.1%}{r['seconds']:>9.2f}{r['seconds'] / forward['seconds']:>11.2f}"
              f"{r['scoring_seconds'] / forward['seconds']:>11.2f}{r['peak_above_baseline_bytes'] / 2**20:>14,.0f}"
              f"{r['peak_above_baseline_bytes'] / forward['model_bytes']:>9.2f}")
    if args.source != "llama" or (args.methods and "sheared" not in args.methods):
        return
    sheared, plain = sheared_step_ratio(args, data_dir, vocab)
    print(f"sheared mask-training step {sheared * 1000:.0f} ms vs plain training step {plain * 1000:.0f} ms: "
          f"{sheared / plain:.2f}x (target <= 2x; Sheared-LLaMA reports about 5x)")


if __name__ == "__main__":
    main()
