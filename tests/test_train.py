import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import recipe
from safetensors.torch import load_file

from regrow.cli.main import main
from regrow.config import from_dict
from regrow.train.config import RunConfig
from regrow.train.metrics import read_metrics
from regrow.train.trainer import train


def write_recipe(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def train_losses(out_dir):
    return [(r["step"], r["loss"]) for r in read_metrics(out_dir) if r["event"] == "train"]


def test_resume_is_bit_identical(tokenizer_dir, data_dir, tmp_path):
    """2N steps in one go == N steps, then --resume to 2N (losses, eval and weights)."""
    schedule = {"name": "cosine", "lr_max": 3e-3, "lr_min": 3e-4, "warmup_steps": 2, "total_steps": 8}
    train_keys = {"steps": 8, "batch_size": 4, "grad_accum": 2, "log_every": 1, "eval_every": 4,
                  "checkpoint_every": 4, "eval_tokens": 512, "progress": False}
    whole = recipe(tokenizer_dir, data_dir, tmp_path / "whole", schedule=schedule, train=train_keys)
    train(from_dict(RunConfig, whole))

    split_path = write_recipe(tmp_path / "split.yaml", recipe(tokenizer_dir, data_dir, tmp_path / "split", schedule=schedule, train={**train_keys, "steps": 4}))
    assert main(["train", str(split_path)]) == 0
    # a kill during a later save leaves a temporary folder: resume must ignore it
    (tmp_path / "split" / "checkpoints" / ".step_00000008.abc.tmp").mkdir()
    assert main(["train", str(split_path), "--set", "train.steps=8", "--resume"]) == 0

    assert train_losses(tmp_path / "whole") == train_losses(tmp_path / "split")
    assert len(train_losses(tmp_path / "split")) == 8  # no duplicated or lost rows
    evals = [[r for r in read_metrics(tmp_path / d) if r["event"] == "eval"] for d in ("whole", "split")]
    assert evals[0] == evals[1]
    a = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    b = load_file(tmp_path / "split" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "split" / "checkpoints" / ".step_00000008.abc.tmp").exists()


def test_export_loads_in_plain_transformers(tokenizer_dir, data_dir, tmp_path):
    """The final folder loads and generates in a process that never imports regrow."""
    summary = train(from_dict(RunConfig, recipe(tokenizer_dir, data_dir, tmp_path / "run")))
    script = f"""
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'run' / 'model')!r})
tok = AutoTokenizer.from_pretrained({str(tmp_path / 'run' / 'model')!r})
ids = tok("def main():", return_tensors="pt").input_ids
out = model.generate(ids, max_new_tokens=5, do_sample=False)
assert out.shape[1] == ids.shape[1] + 5
assert "regrow" not in sys.modules
print(sum(p.numel() for p in model.parameters()))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    assert summary["steps"] == 6 and summary["tokens"] == 6 * 4 * 32


def test_summary_metrics_and_outputs(tokenizer_dir, data_dir, tmp_path):
    cfg = recipe(tokenizer_dir, data_dir, tmp_path / "run", data={"path": str(data_dir), "mixture": {"code": 1.0}, "seq_len": 32},
                 train={"steps": 10, "batch_size": 4, "log_every": 5, "eval_every": 5, "eval_tokens": 256, "progress": False})
    summary = train(from_dict(RunConfig, cfg))
    out = tmp_path / "run"
    assert (out / "config.yaml").is_file() and yaml.safe_load((out / "config.yaml").read_text())["train"]["steps"] == 10
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert any((out / "tensorboard").iterdir())
    rows = read_metrics(out)
    train_rows = [r for r in rows if r["event"] == "train"]
    assert [r["step"] for r in train_rows] == [5, 10]
    assert all({"step", "tokens", "loss", "lr"} <= r.keys() for r in train_rows)
    assert [r["step"] for r in rows if r["event"] == "eval"] == [0, 5, 10]
    assert {"eval/code/loss", "eval/prose/loss"} <= rows[0].keys()
    # the new domain is the one trained on; its loss fell; prose is the old domain
    d = summary["domains"]
    assert d["code"]["role"] == "new" and d["prose"]["role"] == "old"
    assert d["code"]["adaptation"] == pytest.approx(d["code"]["loss_start"] - d["code"]["loss_end"])
    assert d["code"]["adaptation"] > 0
    assert summary["adaptation"] == d["code"]["adaptation"] and summary["forgetting"] == d["prose"]["forgetting"]
    assert summary["flops"] > 0 and summary["tokens"] == 10 * 4 * 32


def test_continue_from_a_model_resets_or_loads_optimizer(tokenizer_dir, data_dir, tmp_path):
    train(from_dict(RunConfig, recipe(tokenizer_dir, data_dir, tmp_path / "base")))
    ckpt = tmp_path / "base" / "checkpoints" / "step_00000006"
    assert (ckpt / "shards" / ".metadata").is_file()
    for name, init, load in (("fresh", tmp_path / "base" / "model", False), ("carried", ckpt, True)):
        cfg = recipe(tokenizer_dir, data_dir, tmp_path / name, model={"init": str(init)}, tokenizer=None)
        cfg["train"]["load_optimizer"] = load
        summary = train(from_dict(RunConfig, cfg))
        # the phase starts where the base model ended
        base_end = json.loads((tmp_path / "base" / "summary.json").read_text())["eval_end"]
        assert summary["eval_start"]["code"]["loss"] == pytest.approx(base_end["code"]["loss"], rel=1e-5)
    fresh, carried = train_losses(tmp_path / "fresh"), train_losses(tmp_path / "carried")
    assert fresh[0] == carried[0]  # same weights, same first batch
    assert fresh[1] != carried[1]  # Adam moments carried over change the first update


def test_keep_last_k_checkpoints(tokenizer_dir, data_dir, tmp_path):
    cfg = recipe(tokenizer_dir, data_dir, tmp_path / "run")
    cfg["train"].update(checkpoint_every=1, keep_checkpoints=2)
    train(from_dict(RunConfig, cfg))
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_00000005", "step_00000006"]


def test_bf16_autocast_trains(tokenizer_dir, data_dir, tmp_path):
    cfg = recipe(tokenizer_dir, data_dir, tmp_path / "run")
    cfg["train"]["precision"] = "bf16"
    summary = train(from_dict(RunConfig, cfg))
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in train_losses(tmp_path / "run"))
    assert summary["eval_end"]["code"]["loss"] < summary["eval_start"]["code"]["loss"]


@pytest.mark.slow
def test_compile_matches_eager(tokenizer_dir, data_dir, tmp_path):
    losses = []
    for compiled in (False, True):
        cfg = recipe(tokenizer_dir, data_dir, tmp_path / str(compiled))
        cfg["train"].update(compile=compiled, steps=3)
        train(from_dict(RunConfig, cfg))
        losses.append([loss for _, loss in train_losses(tmp_path / str(compiled))])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    shutil.rmtree(tmp_path)
