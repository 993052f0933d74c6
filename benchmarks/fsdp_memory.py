"""Host memory of loading and of sheared pruning under FSDP2, per process.

1. Load: writes a synthetic float32 Llama checkpoint of --gb GiB (TinyLlama's layer shape), then
   loads it (a) in one process with `from_pretrained` as regrow's plain path does, (b) in
   --processes processes under torchrun on the meta device, each reading only its own rows. For
   each process: peak RSS (VmHWM) above the process's import baseline (its peak after importing
   regrow, torch and transformers, before the load) as a multiple of checkpoint size / world
   size. Target: <= 1.25x.
2. Sheared: `regrow prune --method sheared` for --sheared-steps steps on a smaller float32
   checkpoint (--sheared-gb), with 1 and with --processes processes; rank 0's peak RSS during
   mask training (the pruning report's `peak_memory_bytes`) must fall with the world size.

    python benchmarks/fsdp_memory.py [--gb 2] [--processes 2] [--sheared-gb 0.6] [--work DIR]

Both phases run on CPU with gloo (the code is the same on GPUs with NCCL).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import make_data  # noqa: E402
from streaming_prune import SHAPE, make_checkpoint  # noqa: E402

GiB = 1 << 30
# narrower layers than TinyLlama's so that a small checkpoint has many of them (per-layer FSDP
# buffers are then a small part of a process's memory, as in a real model)
SHEARED_SHAPE = {"hidden_size": 1024, "intermediate_size": 2816, "num_attention_heads": 16, "num_key_value_heads": 4}


def vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(mode: str, folder: str, results: str) -> None:
    """One process's load: writes {rank, world_size, baseline, loaded, peak} to RESULTS/rank<r>.json."""
    # the import baseline includes the libraries a load imports (modeling code, FSDP, accelerate)
    import accelerate  # noqa: F401
    import torch.distributed.fsdp  # noqa: F401
    from transformers import LlamaForCausalLM  # noqa: F401

    from regrow.models.hf import load_model
    from regrow.models.sharded import load_sharded
    from regrow.resources import return_freed_memory_promptly
    from regrow.world import World

    return_freed_memory_promptly()
    world = World.from_env()
    world.start(torch.device("cpu"))
    baseline = vm("VmHWM")
    if mode == "plain":
        model = load_model(folder)
    else:
        model = load_sharded(folder, world, torch.device("cpu"))
    loaded = vm("VmHWM")
    with torch.no_grad():  # touch every weight, as the first step does (from_pretrained's stay file-mapped until then)
        for param in model.parameters():
            (param.to_local() if hasattr(param, "to_local") else param).sum()
    record = {"rank": world.rank, "world_size": world.world_size, "baseline": baseline, "loaded": loaded, "peak": vm("VmHWM")}
    (Path(results) / f"rank{world.rank}.json").write_text(json.dumps(record))
    world.stop()


def run_load(mode: str, folder: Path, processes: int, results: Path) -> list[dict]:
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = [str(Path(__file__).resolve()), "--worker", mode, str(folder), str(results)]
    if processes == 1:
        command = [sys.executable, *script]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *script]
    subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return [json.loads((results / f"rank{rank}.json").read_text()) for rank in range(processes)]


def run_sheared(source: Path, data: Path, out: Path, processes: int, steps: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    args = ["prune", "--model", str(source), "--method", "sheared", "--target-ratio", "0.5", "--data", str(data),
            "--steps", str(steps), "--seq-len", "64", "--batch-size", "4", "--no-progress", "--out", str(out)]
    if processes == 1:
        command = [sys.executable, "-m", "regrow", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   "-m", "regrow", *args]
    subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    return json.loads((out / "pruning_report.json").read_text())["method_details"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=2.0, help="load checkpoint size in GiB (float32; default 2)")
    parser.add_argument("--processes", type=int, default=2, help="processes of the sharded runs (default 2)")
    parser.add_argument("--sheared-gb", type=float, default=0.6, help="sheared checkpoint size in GiB (default 0.6)")
    parser.add_argument("--sheared-steps", type=int, default=2)
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed)")
    parser.add_argument("--worker", nargs=3, metavar=("MODE", "FOLDER", "RESULTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="regrow-fsdp-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        source = work / "load-source"
        size = make_checkpoint(source, args.gb, dtype=torch.float32) if not source.is_dir() else \
            sum(p.stat().st_size for p in source.glob("*.safetensors"))
        print(f"load: float32 checkpoint of {size / GiB:.2f} GiB")
        print("peak RSS above the import baseline, as a multiple of checkpoint size / world size: right after the "
              "load, and once every weight was touched (from_pretrained leaves float32 weights file-mapped until then)")
        print(f"{'load':<38} {'rank':>4} {'import GiB':>10} {'peak GiB':>9} {'x loaded':>9} {'x touched':>9}")
        met = True
        for mode, processes in (("plain", 1), ("sharded", 1), ("sharded", args.processes)):
            label = f"{'from_pretrained' if mode == 'plain' else 'meta device + own rows'}, {processes} process(es)"
            for row in run_load(mode, source, processes, work / "results"):
                share = size / row["world_size"]
                loaded, touched = (row["loaded"] - row["baseline"]) / share, (row["peak"] - row["baseline"]) / share
                if mode == "sharded":
                    met &= touched <= 1.25
                print(f"{label:<38} {row['rank']:>4} {row['baseline'] / GiB:>10.3f} {row['peak'] / GiB:>9.3f} "
                      f"{loaded:>9.2f} {touched:>9.2f}")
        print(f"target: sharded load <= 1.25 x size/world above the import baseline: {'met' if met else 'NOT met'}")

        small = work / "sheared-source"
        tok_dir, data_dir = make_data(work / "calibration")
        from regrow.data.tokenizer import load_tokenizer, vocab_size_of

        shape = {**SHAPE, **SHEARED_SHAPE, "vocab_size": vocab_size_of(load_tokenizer(tok_dir))}
        small_size = make_checkpoint(small, args.sheared_gb, shape, torch.float32) if not small.is_dir() else \
            sum(p.stat().st_size for p in small.glob("*.safetensors"))
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (tok_dir / name).is_file():
                shutil.copy(tok_dir / name, small / name)
        print(f"\nsheared: float32 checkpoint of {small_size / GiB:.2f} GiB, {args.sheared_steps} steps, batch 4 x 64 tokens")
        peaks = {}
        for processes in (1, args.processes):
            details = run_sheared(small, data_dir, work / f"sheared-{processes}", processes, args.sheared_steps)
            peaks[processes] = details["peak_memory_bytes"]
            print(f"sheared, {processes} process(es): rank 0 peak RSS {peaks[processes] / GiB:.3f} GiB "
                  f"({details['seconds_per_step']:.1f} s/step)")
        ratio = peaks[args.processes] / peaks[1]
        print(f"sheared: {args.processes} processes / 1 process peak = {ratio:.2f} "
              f"(falls with world size: {'yes' if ratio < 1 else 'NO'})")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
