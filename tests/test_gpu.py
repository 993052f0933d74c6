"""What only a GPU can show: bf16 FSDP2, fused AdamW, compile, activation checkpointing and memory
accounting on CUDA, and `regrow prune` on CUDA for every method. Each test compares against the
same run computed another way (without FSDP, on the CPU, uncompiled), never a stored figure.

These run in `benchmarks/gpu_check.sh` on a GPU machine (`pytest -m gpu`); without a CUDA
device they are skipped, with that reason.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import FAMILY_TARGETS, recipe

from regrow.cli.main import main
from regrow.compress.methods import METHODS
from regrow.train.metrics import read_metrics

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="no CUDA device here: run benchmarks/gpu_check.sh on a GPU machine"),
]
SCHEDULE = {"name": "cosine", "lr_max": 3e-3, "lr_min": 3e-4, "warmup_steps": 1, "total_steps": 4}
TRAIN = {"steps": 4, "batch_size": 4, "log_every": 1, "eval_every": 4, "eval_tokens": 256, "progress": False}


def run(tmp_path, tokenizer_dir, data_dir, name: str, **train) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe(tokenizer_dir, data_dir, tmp_path / name, schedule=SCHEDULE,
                                          train={**TRAIN, **train})))
    assert main(["train", str(path)]) == 0
    return tmp_path / name


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(out) if r["event"] == "train"]


@pytest.fixture(scope="module")
def cpu_run(tokenizer_dir, data_dir, tmp_path_factory) -> Path:
    return run(tmp_path_factory.mktemp("cpu"), tokenizer_dir, data_dir, "cpu", device="cpu")


def test_bf16_fsdp2_step_on_one_gpu(family_models):
    """FSDP2 over a process group of one GPU (meta-device build, bf16 all-gathers) trains as the
    unsharded model does under bf16 autocast."""
    script = Path(__file__).parent / "toys" / "gpu_fsdp_step.py"
    result = subprocess.run([sys.executable, str(script), str(family_models["llama"])], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["parameter_types"] == ["DTensor"]
    assert out["fsdp"] == pytest.approx(out["plain"], rel=5e-2)
    assert out["fsdp"][-1] < out["fsdp"][0]


def test_fused_adamw_on_cuda_matches_the_cpu_run(cpu_run, tokenizer_dir, data_dir, tmp_path):
    from conftest import TINY_LLAMA

    from regrow.config import from_dict
    from regrow.models.hf import build_model
    from regrow.train.config import RunConfig
    from regrow.train.trainer import make_optimizer

    cfg = from_dict(RunConfig, recipe(tokenizer_dir, data_dir, tmp_path / "x", schedule=SCHEDULE, train=TRAIN))
    model = build_model({**TINY_LLAMA, "vocab_size": 64}, 0).cuda()
    assert make_optimizer(model, cfg, torch.device("cuda"), sharded=False).defaults["fused"] is True
    out = run(tmp_path, tokenizer_dir, data_dir, "cuda", device="cuda")
    assert losses(out) == pytest.approx(losses(cpu_run), rel=1e-3)


def test_compile_on_cuda_changes_nothing_but_speed(tokenizer_dir, data_dir, tmp_path):
    eager = run(tmp_path, tokenizer_dir, data_dir, "eager", device="cuda")
    compiled = run(tmp_path, tokenizer_dir, data_dir, "compiled", device="cuda", compile=True)
    assert losses(compiled) == pytest.approx(losses(eager), rel=1e-3)


def test_activation_checkpointing_on_cuda(tokenizer_dir, data_dir, tmp_path):
    plain = run(tmp_path, tokenizer_dir, data_dir, "plain", device="cuda", precision="bf16")
    checkpointed = run(tmp_path, tokenizer_dir, data_dir, "ac", device="cuda", precision="bf16",
                       activation_checkpointing=True)
    assert losses(checkpointed) == pytest.approx(losses(plain), rel=1e-3)


def test_cuda_memory_accounting_in_the_summary(tokenizer_dir, data_dir, tmp_path):
    out = run(tmp_path, tokenizer_dir, data_dir, "memory", device="cuda")
    compute = json.loads((out / "summary.json").read_text())["compute"]
    assert compute["peak_memory_kind"] == "cuda_allocated"
    # at least the fp32 weights, their gradients and AdamW's two moments were on the device
    from safetensors.torch import load_file

    weights = sum(t.numel() * 4 for t in load_file(out / "model" / "model.safetensors").values())
    assert compute["peak_memory_bytes"] >= 4 * weights


@pytest.mark.parametrize("method", METHODS.where(lambda m: not m.sparse))
def test_prune_on_cuda(method, family_models, data_dir, tmp_path):
    """Every method on CUDA: the exactness check passes and the kept units are the CPU run's
    (sheared: a learned mask, compared by its loss history instead)."""
    from transformers import AutoModelForCausalLM

    target = tmp_path / "target.yaml"
    shape = FAMILY_TARGETS["llama"] if METHODS[method].changes_width else {"num_hidden_layers": 2}
    target.write_text(yaml.safe_dump(shape))
    reports = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        args = ["prune", "--model", str(family_models["llama"]), "--method", method, "--target", str(target),
                "--out", str(out), "--device", device, "--seq-len", "32", "--batch-size", "4",
                "--calibration-samples", "8", "--steps", "4", "--no-progress"]
        if METHODS[method].needs_data:
            args += ["--data", str(data_dir)]
        assert main(args) == 0
        reports[device] = json.loads((out / "pruning_report.json").read_text())
        AutoModelForCausalLM.from_pretrained(out)  # a plain HF folder
    exactness = reports["cuda"]["exactness"]
    assert exactness.get("max_abs_logit_diff", 0.0) < 1e-3
    if method == "sheared":
        cpu, cuda = (r["method_details"]["history"] for r in (reports["cpu"], reports["cuda"]))
        assert [h["lm_loss"] for h in cuda] == pytest.approx([h["lm_loss"] for h in cpu], rel=1e-3)
    else:
        assert reports["cuda"]["kept"] == reports["cpu"]["kept"]


@pytest.mark.parametrize("method", METHODS.where(lambda m: m.sparse))
def test_sparse_prune_on_cuda(method, family_models, data_dir, tmp_path):
    """Every sparse method on CUDA at 2:4: the masks agree with the CPU run's (all of them for the
    weight-only methods; nearly all for the calibrated ones, whose statistics differ in the last
    bits on the GPU), and the zeros are in place."""
    from safetensors.torch import load_file

    masks = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        args = ["prune", "--model", str(family_models["llama"]), "--method", method, "--pattern", "2:4",
                "--out", str(out), "--device", device, "--seq-len", "32", "--batch-size", "4",
                "--calibration-samples", "8", "--no-progress"]
        if METHODS[method].needs_data:
            args += ["--data", str(data_dir)]
        assert main(args) == 0
        masks[device] = load_file(out / "sparsity_mask.safetensors")
        weights = load_file(out / "model.safetensors")
        assert all(bool((weights[k][~m] == 0).all()) for k, m in masks[device].items())
    agree = sum(int((masks["cpu"][k] == masks["cuda"][k]).sum()) for k in masks["cpu"])
    total = sum(m.numel() for m in masks["cpu"].values())
    assert agree / total >= (1.0 if not METHODS[method].needs_data else 0.99), agree / total
