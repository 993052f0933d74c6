"""Adding a method, a schedule and a law takes one file each (tests/toys/), with no edit anywhere
else in regrow: once imported, each is usable from the command line, in both pruning paths, in a
recipe, by `regrow fit`, and listed by `regrow list`."""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest
import yaml
from conftest import recipe
from safetensors.torch import load_file

from regrow.analysis.laws import LAWS
from regrow.cli.main import main
from regrow.compress.methods import METHODS
from regrow.schedules import SCHEDULES
from regrow.train.metrics import read_metrics

TOYS = {"toy_method": (METHODS, "toy-first"), "toy_schedule": (SCHEDULES, "toy-step"), "toy_law": (LAWS, "toy-power")}


@pytest.fixture(scope="module", autouse=True)
def toys():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent / "toys"))
    for module in TOYS:
        importlib.import_module(module)
    yield
    for module, (registry, name) in TOYS.items():
        registry.unregister(name)
        sys.modules.pop(module, None)
    sys.path.pop(0)


def test_toys_are_listed(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for _, name in TOYS.values())


def test_toy_method_prunes_in_memory_and_streaming(family_models, tmp_path):
    target = {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 64}
    spec = tmp_path / "target.yaml"
    spec.write_text(yaml.safe_dump(target))
    outs = {}
    for mode in ("memory", "streaming"):
        outs[mode] = tmp_path / mode
        assert main(["prune", "--model", str(family_models["llama"]), "--target", str(spec), "--method", "toy-first",
                     "--out", str(outs[mode]), "--no-progress", *(["--streaming"] if mode == "streaming" else [])]) == 0
    report = json.loads((outs["memory"] / "pruning_report.json").read_text())
    assert report["kept"]["layers"] == [0, 1, 2]
    assert report["kept"]["hidden"] == list(range(48))
    assert report["kept"]["per_layer"]["0"]["mlp"] == list(range(64))
    assert report["exactness"]["max_abs_logit_diff"] < 1e-4
    a, b = (load_file(outs[m] / "model.safetensors") if (outs[m] / "model.safetensors").exists() else
            {k: v for f in sorted(outs[m].glob("*.safetensors")) for k, v in load_file(f).items()} for m in outs)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_toy_schedule_drives_training(tokenizer_dir, data_dir, tmp_path):
    schedule = {"name": "toy-step", "lr_max": 2e-3, "lr_min": 2e-4}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(recipe(tokenizer_dir, data_dir, tmp_path / "run", schedule=schedule)))
    assert main(["train", str(path)]) == 0
    lrs = [r["lr"] for r in read_metrics(tmp_path / "run") if r["event"] == "train"]
    assert lrs == [2e-3, 2e-3, 2e-3, 2e-4, 2e-4, 2e-4]  # 6 steps: the first half at lr_max


def test_toy_law_fits_from_the_command_line(tmp_path, capsys):
    d = np.geomspace(1e4, 1e8, 12)
    csv = tmp_path / "points.csv"
    csv.write_text("D,loss\n" + "".join(f"{x},{5.0 * x ** -0.1}\n" for x in d))
    assert main(["fit", "--law", "toy-power", "--csv", str(csv), "--json"]) == 0
    (fit,) = json.loads(capsys.readouterr().out)["fits"]
    assert fit["parameters"]["A"]["value"] == pytest.approx(5.0, rel=1e-9)
    assert fit["parameters"]["alpha"]["value"] == pytest.approx(0.1, rel=1e-9)


def test_a_method_that_scores_no_experts_is_refused_on_an_expert_target(family_models, tmp_path, capsys):
    """The toy method declares no expert scores: an expert target is refused before any work."""
    spec = tmp_path / "target.yaml"
    spec.write_text(yaml.safe_dump({"num_experts": 4}))
    out = tmp_path / "out"
    assert main(["prune", "--model", str(family_models["mixtral"]), "--target", str(spec), "--method", "toy-first",
                 "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "method 'toy-first' cannot score experts, but the target changes num_experts; methods that can: " in err
    assert len(err.splitlines()) == 1 and not out.exists()
