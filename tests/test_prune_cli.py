"""`regrow prune` end to end: every method and every reinit option on every family, exported
folders checked in a process that never imports regrow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from conftest import FAMILY_CONFIGS, FAMILY_TARGETS, depth_target

from regrow.cli.main import main
from regrow.compress.methods import METHODS
from regrow.compress.reinit import REINITS

FAST = ["--seq-len", "32", "--batch-size", "4", "--calibration-samples", "8", "--steps", "4", "--no-progress"]


def write_target(path, spec: dict):
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.fixture(scope="module")
def pruned_folders(family_models, data_dir, tmp_path_factory):
    """Every (family, method) pruned once; reinit options rotate so each family sees all four."""
    root = tmp_path_factory.mktemp("pruned")
    # sparse methods and rewinding (it needs a snapshot): tests/test_sparse.py
    methods = METHODS.where(lambda m: not m.sparse)
    reinits = REINITS.where(lambda f: not getattr(f, "needs_snapshot", False))
    folders = {}
    for f, family in enumerate(FAMILY_CONFIGS):
        for m, method in enumerate(methods):
            spec = depth_target(family) if method == "depth" else FAMILY_TARGETS[family]
            target = write_target(root / f"{family}-{method}.yaml", spec)
            reinit = reinits[(f + m) % len(reinits)]
            out = root / f"{family}-{method}"
            args = ["prune", "--model", str(family_models[family]), "--target", target, "--method", method,
                    "--data", str(data_dir), "--reinit", reinit, "--out", str(out), *FAST]
            assert main(args) == 0, args
            folders[(family, method)] = (out, reinit, spec)
    return folders


def test_every_method_and_reinit_runs_on_every_family(pruned_folders):
    seen = {}
    for (family, method), (out, reinit, spec) in pruned_folders.items():
        report = json.loads((out / "pruning_report.json").read_text())
        config = json.loads((out / "config.json").read_text())
        assert report["method"] == method and report["reinit"] == reinit
        assert report["exactness"]["max_abs_logit_diff"] < 1e-4
        for key, value in spec.items():
            assert report["target"]["shape"][key] == value
        layers = config.get("num_hidden_layers", config.get("n_layer")) or len(config["layers_block_type"])  # Nemotron-H
        assert layers == spec["num_hidden_layers"]
        assert len(report["kept"]["layers"]) == spec["num_hidden_layers"]
        assert report["target"]["parameters"] < report["source"]["parameters"]
        assert report["wall_seconds"]["total"] > 0
        if METHODS[method].needs_data:
            assert report["calibration_tokens"] > 0 and report["flops"] > 0
        else:
            assert report["flops"] == 0
        saved = yaml.safe_load((out / "prune_config.yaml").read_text())
        assert saved["method"] == method
        seen.setdefault(family, set()).add(reinit)
    assert all(options == set(REINITS.where(lambda f: not getattr(f, "needs_snapshot", False))) for options in seen.values())


def test_exports_load_and_generate_in_plain_transformers(pruned_folders):
    folders = {f"{family}-{method}": str(out) for (family, method), (out, _, _) in pruned_folders.items()}
    script = f"""
import json, sys, torch
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
for name, folder in {folders!r}.items():
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    report = json.loads((Path(folder) / "pruning_report.json").read_text())
    n = sum(p.numel() for p in model.parameters())
    assert n == report["target"]["parameters"], (name, n, report["target"]["parameters"])
    ids = tok("def main():", return_tensors="pt").input_ids
    # min_new_tokens: a random model may pick the end-of-text token early; every step is compared
    out = model.generate(ids, max_new_tokens=6, min_new_tokens=6, do_sample=False, use_cache=True)
    ref = model.generate(ids, max_new_tokens=6, min_new_tokens=6, do_sample=False, use_cache=False)
    assert out.shape[1] == ids.shape[1] + 6 and torch.equal(out, ref), name
assert "regrow" not in sys.modules
print("ok", len({folders!r}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok")


def test_prune_to_an_existing_config(family_models, data_dir, tmp_path):
    """--target config.json: the shape of another model of the family (Sheared-LLaMA style)."""
    source = json.loads((family_models["llama"] / "config.json").read_text())
    other = {**source, "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 48, "head_dim": 8}
    (tmp_path / "config.json").write_text(json.dumps(other))
    out = tmp_path / "out"
    assert main(["prune", "--model", str(family_models["llama"]), "--target", str(tmp_path / "config.json"),
                 "--method", "magnitude", "--out", str(out), "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size", "head_dim"):
        assert config[key] == other[key], key


def test_target_ratio_prints_shapes(family_models, data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prune", "--model", str(family_models["qwen2"]), "--target-ratio", "0.5", "--method", "activation",
                 "--data", str(data_dir), "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "source: layers 4, hidden 64" in printed and "target: layers 4" in printed
    report = json.loads((out / "pruning_report.json").read_text())
    assert abs(report["target"]["fraction_kept"] - 0.5) < 0.08


def test_depth_contiguous_removes_one_block(family_models, data_dir, tmp_path):
    out = tmp_path / "out"
    target = write_target(tmp_path / "t.yaml", {"num_hidden_layers": 2})
    assert main(["prune", "--model", str(family_models["llama"]), "--target", target, "--method", "depth",
                 "--depth-mode", "contiguous", "--data", str(data_dir), "--out", str(out), *FAST]) == 0
    report = json.loads((out / "pruning_report.json").read_text())
    first, last = report["method_details"]["removed_block"]
    assert last - first == 1
    assert report["kept"]["layers"] == [i for i in range(4) if not first <= i <= last]
    runs = report["method_details"]["run_influence"]
    assert runs[first] == min(runs)
