import json

import pytest
import yaml
from conftest import TINY_LLAMA, recipe

from regrow.cli.main import main


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return str(path)


def run_error(capsys, argv):
    """Run the CLI expecting a user error: exit 2 and a single line naming the problem."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("regrow: error: ") and "\n" not in err
    return err


@pytest.fixture(scope="module")
def trained(tokenizer_dir, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    path = write(out.parent / "r.yaml", recipe(tokenizer_dir, data_dir, out))
    assert main(["train", path]) == 0
    return out, path


def test_eval_reports_every_domain(trained, data_dir, capsys):
    out, _ = trained
    capsys.readouterr()
    assert main(["eval", "--model", str(out / "model"), "--data", str(data_dir), "--json", "--seq-len", "32"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results) == {"code", "prose"}
    summary = json.loads((out / "summary.json").read_text())
    for r in results.values():
        assert r["perplexity"] == pytest.approx(2.718281828 ** r["loss"], rel=1e-6)
        assert r["tokens"] > 0
    # the same windows as the trainer's final evaluation give the same loss
    assert main(["eval", "--model", str(out / "model"), "--data", str(data_dir), "--json", "--seq-len", "32", "--max-tokens", "512", "--batch-size", "4"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["code"]["loss"] == pytest.approx(summary["eval_end"]["code"]["loss"], rel=1e-5)


def test_schedule_json_and_plot(tmp_path, capsys):
    path = write(tmp_path / "s.yaml", {"schedule": {"name": "wsd", "lr_max": 1e-3, "lr_min": 0.0, "warmup_steps": 10, "decay_fraction": 0.5, "decay_shape": "linear"}, "train": {"steps": 100}})
    assert main(["schedule", path, "--json", "--plot", str(tmp_path / "lr.png")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["step"] == list(range(1, 101))
    assert data["lr"][9] == pytest.approx(1e-3) and data["lr"][74] == pytest.approx(0.5e-3) and data["lr"][99] == 0.0
    assert (tmp_path / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    only = write(tmp_path / "only.yaml", {"name": "constant", "total_steps": 50})
    assert main(["schedule", only, "--json", "--set", "lr_max=2.0"]) == 0
    assert json.loads(capsys.readouterr().out)["lr"][0] == pytest.approx(2.0)


# ---- bad input: exit 2, one line naming the value and what is allowed, nothing written --------

def test_prepare_missing_and_empty_input(tmp_path, tokenizer_dir, capsys):
    out = tmp_path / "store"
    err = run_error(capsys, ["data", "prepare", str(tmp_path / "nope.txt"), "--domain", "x", "--tokenizer", str(tokenizer_dir), "--out", str(out)])
    assert "nope.txt" in err and "does not exist" in err
    (tmp_path / "empty.txt").write_text("   \n")
    err = run_error(capsys, ["data", "prepare", str(tmp_path / "empty.txt"), "--domain", "x", "--tokenizer", str(tokenizer_dir), "--out", str(out), "--no-progress"])
    assert "hold no text" in err
    assert not out.exists() or not any(p.name == "x" or p.name.startswith(".x") for p in out.iterdir())
    err = run_error(capsys, ["data", "prepare", "--domain", "x", "--tokenizer", str(tokenizer_dir), "--out", str(out)])
    assert "no input given" in err
    err = run_error(capsys, ["tokenizer", "train", str(tmp_path / "empty.txt"), "--vocab-size", "300", "--out", str(tmp_path / "t")])
    assert "hold no text" in err and not (tmp_path / "t").exists()


def test_prepare_rejects_data_of_another_tokenizer(tmp_path, corpus, data_dir, capsys):
    other = tmp_path / "other_tok"
    assert main(["tokenizer", "train", str(corpus["code"]), "--vocab-size", "300", "--out", str(other)]) == 0
    err = run_error(capsys, ["data", "prepare", str(corpus["code"]), "--domain", "new", "--tokenizer", str(other), "--out", str(data_dir), "--no-progress"])
    assert "another tokenizer" in err


@pytest.mark.parametrize(
    "change,message",
    [
        ({"data": {"mixture": {"code": 1.0, "german": 0.1}}}, r"names domain 'german', which the data folder lacks"),
        ({"data": {"mixture": {"code": -1.0, "prose": 1.0}}}, r"weight of 'code' is -1.0"),
        ({"data": {"mixture": {"code": 0.0, "prose": 0.0}}}, r"weights are all zero"),
        ({"model": {"config": {**TINY_LLAMA, "vocab_size": 100}}}, r"tokenizer has 512 tokens but the model's vocabulary holds 100"),
        ({"data": {"seq_len": 128}}, r"data.seq_len 128 exceeds the model's 64 positions; allowed: <= 64"),
        ({"schedule": {"name": "triangle"}}, r"unknown schedule 'triangle'; allowed: constant, cosine, wsd, infinite, inverse_sqrt"),
        ({"schedule": {"name": "wsd", "decay_shape": "cubic"}}, r"unknown schedule.decay_shape 'cubic'; allowed: linear, cosine, sqrt, exp"),
        ({"schedule": {"name": "wsd", "warmup_steps": 6, "decay_fraction": 0.5}}, r"warmup_steps 6 runs past the decay start at step 3"),
        ({"schedule": {"name": "cosine", "lr_max": 1e-4, "lr_min": 1e-3}}, r"lr_min 0.001 must be within \[0, lr_max = 0.0001\]"),
        ({"train": {"precision": "fp8"}}, r"train.precision 'fp8' is not supported; allowed: fp32, bf16"),
    ],
)
def test_train_bad_recipes(tokenizer_dir, data_dir, tmp_path, capsys, change, message):
    import re

    data = recipe(tokenizer_dir, data_dir, tmp_path / "run")
    for section, values in change.items():
        data[section] = {**data[section], **values} if section != "schedule" else values
    err = run_error(capsys, ["train", write(tmp_path / "r.yaml", data)])
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_unknown_set_key(tokenizer_dir, data_dir, tmp_path, capsys):
    path = write(tmp_path / "r.yaml", recipe(tokenizer_dir, data_dir, tmp_path / "run"))
    err = run_error(capsys, ["train", path, "--set", "train.learning_rate=1"])
    assert "unknown --set key 'train.learning_rate'" in err and "train.steps" in err
    assert not (tmp_path / "run").exists()


def test_resume_rejects_changed_model_or_data(trained, capsys):
    out, path = trained
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    err = run_error(capsys, ["train", path, "--resume", "--set", "model.config.hidden_size=64"])
    assert "model.config.hidden_size (" in err and "-> 64)" in err
    err = run_error(capsys, ["train", path, "--resume", "--set", "data.mixture.code=0.9"])
    assert "data.mixture" in err
    err = run_error(capsys, ["train", path, "--resume", "--set", "train.steps=12"])
    assert "resolved.schedule.total_steps (6 -> 12)" in err  # a defaulted schedule length would change
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before


def test_resume_and_overwrite_guards(trained, tmp_path, tokenizer_dir, data_dir, capsys):
    out, path = trained
    err = run_error(capsys, ["train", path])
    assert "already holds a run; pass --resume" in err
    fresh = write(tmp_path / "f.yaml", recipe(tokenizer_dir, data_dir, tmp_path / "empty"))
    err = run_error(capsys, ["train", fresh, "--resume"])
    assert "has no checkpoint to resume from" in err


def test_eval_rejects_data_of_another_tokenizer(trained, corpus, tmp_path, capsys):
    out, _ = trained
    other = tmp_path / "tok"
    assert main(["tokenizer", "train", str(corpus["prose"]), "--vocab-size", "300", "--out", str(other)]) == 0
    assert main(["data", "prepare", str(corpus["prose"]), "--domain", "p", "--tokenizer", str(other), "--out", str(tmp_path / "d"), "--no-progress", "--val-fraction", "0.2"]) == 0
    err = run_error(capsys, ["eval", "--model", str(out / "model"), "--data", str(tmp_path / "d"), "--seq-len", "32"])
    assert "another tokenizer" in err
    err = run_error(capsys, ["eval", "--model", str(out / "model"), "--data", str(tmp_path / "d")])
    assert "--seq-len 256 exceeds the model's 64 positions" in err


def test_extending_tables_are_the_registries(capsys):
    """docs/EXTENDING.md's registry tables are `regrow list --markdown`: they name every registered entry."""
    from pathlib import Path

    from regrow.compress.methods import METHODS
    from regrow.schedules import SCHEDULES

    assert main(["list", "--markdown"]) == 0
    tables = capsys.readouterr().out
    readme = (Path(__file__).parents[1] / "docs" / "EXTENDING.md").read_text()
    block = readme.split("<!-- registries:start -->\n")[1].split("<!-- registries:end -->")[0]
    assert block == tables
    for name in [*METHODS, *SCHEDULES]:
        assert f"| {name} |" in tables
