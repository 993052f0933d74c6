"""Prune a checkpoint larger than the memory it may use: `regrow prune --streaming`.

Writes a synthetic Llama-shaped checkpoint of at least --gb GiB (random bf16 weights, one
safetensors shard per layer, written one layer at a time), then prunes it to half width with
the streaming `activation` method (calibration one layer at a time) in a child process and
reports the child's peak resident memory against the checkpoint's size (target: <= 15%), and
against a process that only imports regrow, torch and transformers (measured in the same run).

    python benchmarks/streaming_prune.py [--gb 4] [--method activation] [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))
from common import make_data  # noqa: E402

GiB = 1 << 30
SHAPE = {  # TinyLlama-1.1B's layer shape, with as many layers as the size asks for
    "model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 32,
    "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 2048, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "architectures": ["LlamaForCausalLM"], "rms_norm_eps": 1e-5,
}


def layer_tensors(index: int, generator: torch.Generator, shape: dict = SHAPE,
                  dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    h, m = shape["hidden_size"], shape["intermediate_size"]
    kv = h // shape["num_attention_heads"] * shape["num_key_value_heads"]
    shapes = {"self_attn.q_proj.weight": (h, h), "self_attn.k_proj.weight": (kv, h), "self_attn.v_proj.weight": (kv, h),
              "self_attn.o_proj.weight": (h, h), "mlp.gate_proj.weight": (m, h), "mlp.up_proj.weight": (m, h),
              "mlp.down_proj.weight": (h, m), "input_layernorm.weight": (h,), "post_attention_layernorm.weight": (h,)}
    out = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            tensor = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            tensor = torch.randn(shape, generator=generator) * 0.02
        out[f"model.layers.{index}.{name}"] = tensor.to(dtype)
    return out


def make_checkpoint(folder: Path, gb: float, shape: dict = SHAPE, dtype: torch.dtype = torch.bfloat16) -> int:
    """A Llama-shaped checkpoint of >= gb GiB (bf16 by default); returns its size in bytes."""
    h, v, size = shape["hidden_size"], shape["vocab_size"], dtype.itemsize
    g = torch.Generator().manual_seed(0)
    outer_bytes = 2 * v * h * size
    layer_bytes = sum(t.numel() * size for t in layer_tensors(0, g, shape, dtype).values())
    layers = max(2, -(-int(gb * GiB - outer_bytes) // layer_bytes))
    folder.mkdir(parents=True)
    files = layers + 1
    weight_map = {}
    for index in range(layers):
        name = f"model-{index + 1:05d}-of-{files:05d}.safetensors"
        tensors = layer_tensors(index, g, shape, dtype)
        save_file(tensors, folder / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
    outer = {"model.embed_tokens.weight": (torch.randn(v, h, generator=g) * 0.02).to(dtype),
             "lm_head.weight": (torch.randn(v, h, generator=g) * 0.02).to(dtype),
             "model.norm.weight": torch.ones(h, dtype=dtype)}
    name = f"model-{files:05d}-of-{files:05d}.safetensors"
    save_file(outer, folder / name, metadata={"format": "pt"})
    weight_map.update(dict.fromkeys(outer, name))
    total = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    config = {**shape, "num_hidden_layers": layers, "torch_dtype": str(dtype).removeprefix("torch.")}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return total


IMPORT_ONLY = "import regrow.cli.main, torch, transformers; from regrow.resources import peak_rss_bytes; print(peak_rss_bytes())"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=4.0, help="checkpoint size in GiB (default 4)")
    parser.add_argument("--method", default="activation", help="activation (default), depth or magnitude")
    parser.add_argument("--samples", type=int, default=16, help="calibration sequences (default 16)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4, help="calibration sequences per forward (default 4)")
    parser.add_argument("--precision", default="bf16", help="bf16 (default: layers run in the checkpoint's own bf16 "
                        "weights) or fp32 (a float32 copy of each layer, as the in-memory path computes)")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic checkpoint and the output")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="regrow-streaming-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        source, out = work / "source", work / "pruned"
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        size = sum(p.stat().st_size for p in source.glob("*.safetensors")) if source.is_dir() else make_checkpoint(source, args.gb)
        print(f"checkpoint: {size / GiB:.2f} GiB ({len(list(source.glob('*.safetensors')))} shards), "
              f"made in {time.perf_counter() - started:.0f} s")
        _, data_dir = make_data(work / "calibration")

        baseline = int(subprocess.run([sys.executable, "-c", IMPORT_ONLY], capture_output=True, text=True, check=True).stdout)
        target = "width" if args.method != "depth" else "depth"
        target_args = ["--target-ratio", "0.5"] if target == "width" else ["--target", str(work / "depth.yaml")]
        if target == "depth":
            layers = json.loads((source / "config.json").read_text())["num_hidden_layers"]
            (work / "depth.yaml").write_text(f"num_hidden_layers: {layers // 2}\n")
        command = [sys.executable, "-m", "regrow", "prune", "--model", str(source), "--method", args.method, *target_args,
                   "--data", str(data_dir), "--calibration-samples", str(args.samples), "--seq-len", str(args.seq_len),
                   "--batch-size", str(args.batch_size), "--precision", args.precision, "--out", str(out), "--streaming", "--no-progress"]
        started = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - started
        report = json.loads((out / "pruning_report.json").read_text())
        peak = report["streaming"]["peak_rss_bytes"]  # VmHWM of the prune process itself
        written = report["streaming"]["written"]["bytes"]
        read = report["streaming"]["source_bytes_read"]
        ratio = peak / size
        print(f"import-only process: peak RSS {baseline / GiB:.3f} GiB")
        print(f"streaming {args.method} prune ({args.precision}, batch {args.batch_size}): peak RSS {peak / GiB:.3f} GiB = {ratio:.1%} of the checkpoint "
              f"(target <= 15%: {'met' if ratio <= 0.15 else 'NOT met'}); above the import-only process: "
              f"{(peak - baseline) / GiB:.3f} GiB; {seconds:.0f} s; wrote {written / GiB:.2f} GiB "
              f"({report['target']['parameters']:,} parameters)")
        print(f"I/O: read {read / GiB:.2f} GiB of the source = {read / size:.2f} x the checkpoint (scoring, writing and "
              f"the layer check together)")
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
