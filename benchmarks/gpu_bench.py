"""GPU figures of pruning and loading a ~1B model (run by benchmarks/gpu_check.sh; needs CUDA).

    python benchmarks/gpu_bench.py prune --work DIR --json OUT.json
        `regrow prune --device cuda --precision bf16` with every method on a 1.0B Llama (TinyLlama's
        layers, the benchmark tokenizer's 4096-token vocabulary), each as a multiple of one bf16
        forward pass over the same calibration tokens, measured in the same run.
    python benchmarks/gpu_bench.py load --work DIR --json OUT.json
        loading that checkpoint onto the GPU: `from_pretrained` then `.to("cuda")` against regrow's
        meta-device load that reads the rows straight into the GPU's tensors; seconds and host
        peak RSS above each process's import baseline (each way in its own process).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_data  # noqa: E402

GiB = 1 << 30
LLAMA_1B = {"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32,
            "num_key_value_heads": 4, "intermediate_size": 5632, "max_position_embeddings": 2048,
            "tie_word_embeddings": False}
SEQ_LEN, BATCH, SAMPLES = 512, 8, 64


def checkpoint(work: Path) -> tuple[Path, Path]:
    """The 1B source (bf16 on disk, with the tokenizer) and the calibration data, made once."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from regrow.data.tokenizer import load_tokenizer, vocab_size_of

    tok_dir, data_dir = make_data(work / "data")
    source = work / "llama-1b"
    if not (source / "config.json").is_file():
        tokenizer = load_tokenizer(tok_dir)
        config = AutoConfig.for_model(**LLAMA_1B, vocab_size=vocab_size_of(tokenizer))
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.save_pretrained(source)
        tokenizer.save_pretrained(source)
        del model
        torch.cuda.empty_cache()
    return source, data_dir


def forward_seconds(source: Path) -> float:
    """One bf16 forward pass over the calibration tokens (the unit of the pruning cost)."""
    from regrow.models.hf import load_model

    model = load_model(source).to("cuda").eval()
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, model.config.vocab_size, (BATCH, SEQ_LEN), generator=gen).cuda()
               for _ in range(SAMPLES // BATCH)]
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        model(input_ids=batches[0], use_cache=False)  # warm-up
        torch.cuda.synchronize()
        started = time.perf_counter()
        for ids in batches:
            model(input_ids=ids, use_cache=False)
        torch.cuda.synchronize()
    del model
    torch.cuda.empty_cache()
    return time.perf_counter() - started


def prune_all(work: Path) -> dict:
    from regrow.compress.config import PruneConfig
    from regrow.compress.methods import METHODS
    from regrow.compress.prune import prune
    from regrow.config import from_dict

    source, data_dir = checkpoint(work)
    forward = forward_seconds(source)
    result = {"model": str(source), "calibration_tokens": SAMPLES * SEQ_LEN, "forward_seconds": forward, "methods": {}}
    for method in METHODS:
        out = work / f"pruned-{method}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        target = ({"sparsity": 0.5} if METHODS[method].sparse else {"target_ratio": 0.5} if METHODS[method].changes_width
                  else {"target": str(work / "depth.yaml")})
        (work / "depth.yaml").write_text("num_hidden_layers: 11\n")
        cfg = from_dict(PruneConfig, {"model": str(source), "out": str(out), "method": method, **target,
                                      "data": str(data_dir), "seq_len": SEQ_LEN, "batch_size": BATCH,
                                      "calibration_samples": SAMPLES, "device": "cuda", "precision": "bf16",
                                      "progress": False, "sheared": {"steps": 20}})
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        report = prune(cfg, echo=lambda message: None)
        wall = time.perf_counter() - started
        result["methods"][method] = {
            "wall_seconds": wall, "scoring_seconds": report["wall_seconds"]["scoring"],
            "x_forward": wall / forward, "scoring_x_forward": report["wall_seconds"]["scoring"] / forward,
            "gpu_peak_gib": torch.cuda.max_memory_allocated() / GiB,
            "max_abs_logit_diff": report["exactness"].get("max_abs_logit_diff"),
        }
        torch.cuda.empty_cache()
    return result


def vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def load_once(way: str, source: Path) -> dict:
    """One way of loading, in this (fresh) process."""
    import accelerate  # noqa: F401  (in the import baseline, as everything a load imports)
    from transformers import LlamaForCausalLM  # noqa: F401

    from regrow.models.hf import load_model
    from regrow.models.sharded import load_sharded
    from regrow.world import World

    torch.zeros(1, device="cuda")  # the CUDA context is part of the baseline
    baseline = vm_hwm()
    torch.cuda.synchronize()
    started = time.perf_counter()
    if way == "from_pretrained":
        model = load_model(source).to("cuda")
    else:
        model = load_sharded(source, World(), torch.device("cuda"), training=False)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    return {"seconds": seconds, "host_peak_above_import_gib": (vm_hwm() - baseline) / GiB,
            "gpu_gib": torch.cuda.memory_allocated() / GiB, "parameters": params}


def load_all(work: Path) -> dict:
    source, _ = checkpoint(work)
    size = sum(p.stat().st_size for p in source.glob("*.safetensors"))
    result = {"checkpoint_gib": size / GiB, "ways": {}}
    for way in ("from_pretrained", "meta_device"):
        out = subprocess.run([sys.executable, __file__, "load-once", way, str(source)], capture_output=True, text=True,
                             check=True)
        result["ways"][way] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("prune", "load"):
        one = sub.add_parser(name)
        one.add_argument("--work", type=Path, required=True)
        one.add_argument("--json", type=Path, required=True)
    once = sub.add_parser("load-once")
    once.add_argument("way", choices=("from_pretrained", "meta_device"))
    once.add_argument("source", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.exit(2, "gpu_bench: no CUDA device\n")
    if args.command == "load-once":
        print(json.dumps(load_once(args.way, args.source)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    result = prune_all(args.work) if args.command == "prune" else load_all(args.work)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
