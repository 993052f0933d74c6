"""`regrow study`: a grid of prune-then-continue runs with controls, indexed in SQLite, resumable."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from regrow.cli.main import main
from regrow.train.metrics import read_metrics

TARGET = {"hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48}


def study_file(tmp_path, family_models, data_dir, **changes) -> str:
    study = {
        "out_dir": str(tmp_path / "study"),
        "source": {"model": str(family_models["llama"])},
        "data": {"path": str(data_dir), "old": ["prose"], "new": ["code"], "seq_len": 32},
        "grid": {"method": ["activation"], "target": [TARGET], "reinit": ["none"],
                 "schedule": [{"name": "cosine", "lr_max": 1e-3, "lr_min": 1e-4, "warmup_steps": 1}],
                 "replay": [0.0, 0.25], "tokens": [512], "seed": [0]},
        "prune": {"calibration_samples": 8, "batch_size": 4},
        "train": {"batch_size": 4, "eval_tokens": 256, "log_every": 1, "checkpoint_every": 1},
    }
    for key, value in changes.items():
        section, _, leaf = key.partition(".")
        if leaf:
            study[section][leaf] = value
        else:
            study[section] = value
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return str(path)


def rows(folder):
    with sqlite3.connect(folder / "index.sqlite") as db:
        return db.execute("SELECT key, kind, status, attempts FROM runs ORDER BY key").fetchall()


def test_study_runs_every_cell_with_controls_and_skips_done(tmp_path, family_models, data_dir, capsys):
    path = study_file(tmp_path, family_models, data_dir)
    assert main(["study", path]) == 0
    folder = tmp_path / "study"
    found = rows(folder)
    keys = [k for k, *_ in found]
    assert keys == sorted([
        "prune-activation-t0-none-seed0", "scratch-t0-seed0",
        *[f"train-{start}-cosine0-replay{r}-tok512" for start in ("activation-t0-none-seed0", "scratch-t0-seed0", "source-seed0")
          for r in ("0", "0.25")],
    ])
    assert all(status == "done" and attempts == 1 for _, _, status, attempts in found)
    summary = json.loads((folder / "runs" / "train-activation-t0-none-seed0-cosine0-replay0.25-tok512" / "summary.json").read_text())
    assert summary["steps"] == 512 // (4 * 32) and summary["mixture"] == {"code": 0.75, "prose": 0.25}
    assert summary["compute"]["flops"]["pruning"] > 0  # the activation pass is charged to the run it started
    scratch = json.loads((folder / "runs" / "scratch-t0-seed0" / "pruning_report.json").read_text())
    assert scratch["reinit"] == "random"

    capsys.readouterr()
    assert main(["study", path]) == 0  # everything done: nothing runs again, no row is added
    assert "  run " not in capsys.readouterr().out
    assert rows(folder) == found
    assert main(["study", "status", str(folder)]) == 0
    assert "8 runs: 0 pending, 0 running, 8 done, 0 failed" in capsys.readouterr().out


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path, family_models, data_dir, capsys, monkeypatch):
    import regrow.study.executors.local as local

    real_execute = local.execute

    def execute(kind, config, threads=None):  # one cell fails while it runs (e.g. out of memory)
        if kind == "train" and config["schedule"]["warmup_steps"] == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_execute(kind, config, threads)

    monkeypatch.setattr(local, "execute", execute)
    schedules = [{"name": "cosine", "warmup_steps": 1}, {"name": "cosine", "warmup_steps": 2}]
    path = study_file(tmp_path, family_models, data_dir, **{"grid.schedule": schedules, "grid.replay": [0.0],
                                                             "controls": {"scratch": False, "source": False}})
    assert main(["study", path]) == 1
    status = {k: s for k, _, s, _ in rows(tmp_path / "study")}
    assert status["train-activation-t0-none-seed0-cosine0-replay0-tok512"] == "done"
    assert status["train-activation-t0-none-seed0-cosine1-replay0-tok512"] == "failed"
    assert main(["study", "status", str(tmp_path / "study")]) == 0
    assert "RuntimeError: CUDA out of memory (simulated)" in capsys.readouterr().out


def test_a_bad_cell_is_refused_before_any_run(tmp_path, family_models, data_dir, capsys):
    schedules = [{"name": "cosine", "warmup_steps": 1}, {"name": "cosine", "warmup_steps": 99}]  # 99 >= its 4 steps
    path = study_file(tmp_path, family_models, data_dir, **{"grid.schedule": schedules, "grid.replay": [0.0]})
    assert main(["study", path]) == 2
    assert "warmup_steps 99 must be < total_steps 4" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()


def test_killed_study_completes_without_duplicate_or_lost_rows(tmp_path, family_models, data_dir):
    path = study_file(tmp_path, family_models, data_dir, **{"grid.tokens": [2048], "grid.replay": [0.0]})
    folder = tmp_path / "study"
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    # held at the second checkpoint of its first training run (regrow.pause_points): one checkpoint
    # complete, the run not finished, whatever the machine's speed
    env = {**os.environ, "REGROW_PAUSE_AT": "checkpoint-shards@2", "REGROW_PAUSE_DIR": str(pauses)}
    proc = subprocess.Popen([sys.executable, "-m", "regrow", "study", path], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(pauses.glob("checkpoint-shards@2.*")):
        time.sleep(0.05)
    assert list(pauses.glob("checkpoint-shards@2.*")), "the study never reached a training run's second checkpoint"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # the runs killed mid-way: a checkpoint on disk, no summary yet
    interrupted = {run.name: max(int(c.parent.name.removeprefix("step_")) for c in run.glob("checkpoints/step_*/state.json"))
                   for run in (folder / "runs").glob("train-*")
                   if list(run.glob("checkpoints/step_*/state.json")) and not (run / "summary.json").exists()}
    assert interrupted, "the kill did not land inside a training run"
    before = rows(folder)
    assert any(status != "done" for _, _, status, _ in before)
    assert main(["study", path]) == 0
    after = rows(folder)
    assert [k for k, *_ in after] == [k for k, *_ in before]  # same rows, none duplicated or lost
    assert all(status == "done" for _, _, status, _ in after)
    for run in (folder / "runs").glob("train-*"):
        steps = [r["step"] for r in read_metrics(run) if r["event"] == "train"]
        assert steps == list(range(1, 2048 // 128 + 1)), run.name  # resumed runs: no duplicated or lost steps
    for name, step in interrupted.items():  # each went on from its checkpoint, not from step 0
        resumes = [r["step"] for r in read_metrics(folder / "runs" / name) if r["event"] == "resume"]
        assert resumes and step <= resumes[0] < 2048 // 128, (name, step, resumes)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"grid.method": ["optimal-brain-surgeon"]}, r"unknown method 'optimal-brain-surgeon' in grid.method; allowed: activation"),
        ({"grid.reinit": []}, r"grid.reinit is empty: the grid has no cells"),
        ({"grid.target": [{"hidden_size": 128}]}, r"target hidden_size 128 is larger than the source's 64"),
        ({"grid.tokens": [64]}, r"grid.tokens 64 is smaller than one step \(128 tokens"),
        ({"data": {"path": "DATA", "old": ["german"], "new": ["code"], "seq_len": 32}}, r"domain\(s\) german that"),
        ({"grid.colour": ["red"]}, r"unknown config key 'grid.colour'"),
    ],
)
def test_bad_studies(changes, message, tmp_path, family_models, data_dir, capsys):
    import re

    if "data" in changes:
        changes = {"data": {**changes["data"], "path": str(data_dir)}}
    path = study_file(tmp_path, family_models, data_dir, **changes)
    assert main(["study", path]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("regrow: error: ") and "\n" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "study" / "index.sqlite").exists()


def test_study_folder_of_another_study_file(tmp_path, family_models, data_dir, capsys):
    path = study_file(tmp_path, family_models, data_dir, **{"grid.replay": [0.0], "controls": {"scratch": False, "source": False}})
    assert main(["study", path]) == 0
    other = study_file(tmp_path, family_models, data_dir, **{"grid.replay": [0.5], "controls": {"scratch": False, "source": False}})
    assert main(["study", other]) == 2
    assert "keys that differ: grid.replay" in capsys.readouterr().err


def test_parallel_jobs(tmp_path, family_models, data_dir):
    path = study_file(tmp_path, family_models, data_dir, **{"controls": {"scratch": False, "source": True}})
    assert main(["study", path, "--jobs", "2"]) == 0
    found = rows(tmp_path / "study")
    assert len(found) == 5 and all(status == "done" and attempts == 1 for _, _, status, attempts in found)


def test_report_from_a_finished_study(tmp_path, family_models, data_dir, capsys):
    from regrow.study.report.data import flops_to_reach, saving_factor

    path = study_file(tmp_path, family_models, data_dir, **{"grid.tokens": [1024]})
    assert main(["study", path]) == 0
    capsys.readouterr()
    folder = tmp_path / "study"
    assert main(["report", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "won" in printed and "| rank | start |" in printed
    md = (folder / "report.md").read_text()
    html = (folder / "report.html").read_text()
    report = json.loads((folder / "report.json").read_text())
    starts = {r["start"] for r in report["ranking"]}
    assert starts == {"activation-t0-none", "scratch-t0", "source"}
    assert "loss curves: code" in report["figures"] and "loss vs. FLOPs" in report["figures"]
    assert html.count("data:image/png;base64,") == len(report["figures"]) and "<table>" in html
    assert "## Ranking" in md and "## Study file (resolved)" in md and "prune-activation-t0-none-seed0" in md
    assert "domain weights" not in report["figures"]  # no dynamic run in this study
    ranked = [r["new_loss"] for r in report["ranking"]]
    assert ranked == sorted(ranked)
    # the saving factor is computed from the curves: a control that needs twice the FLOPs -> 2x
    control = (np.array([0.0, 10.0, 20.0]), np.array([5.0, 4.0, 3.0]))
    method = (np.array([2.0, 6.0, 10.0]), np.array([4.0, 3.0, 2.5]))
    assert flops_to_reach(*method, 3.0) == 6.0 and flops_to_reach(*control, 3.0) == 20.0
    assert saving_factor(method, control) == pytest.approx(20.0 / 6.0)
    assert saving_factor((np.array([1.0, 2.0]), np.array([9.0, 8.0])), control) is None  # never reaches it

    # a damaged run file is named in one line, and the earlier report stays as it was
    from badinput import assert_refused

    run = folder / "runs" / "train-activation-t0-none-seed0-cosine0-replay0-tok1024"
    (folder / "analysis").mkdir()
    damage = {  # file -> (its damaged bytes, what the message calls it)
        run / "metrics.jsonl": (lambda data: data.replace(b"\n", b"\n\x00\xff binary\n", 2), "metrics file"),
        run / "config.yaml": (lambda data: data[: len(data) // 3] + b"\x00\x01\x02", "is a binary file"),
        folder / "analysis" / "probe.json": (lambda data: b'{"kind": "probe", "models": [{"mod', "analysis record"),
    }
    for path, (damaged, expect) in damage.items():
        original = path.read_bytes() if path.exists() else b""
        path.write_bytes(damaged(original))
        message = assert_refused(capsys, ["report", folder], expect, [folder])
        assert path.name in message
        path.write_bytes(original)


def test_report_and_status_need_a_study_folder(tmp_path, capsys):
    for argv in (["report", str(tmp_path)], ["study", "status", str(tmp_path)], ["study", "status"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("regrow: error: ") and "\n" not in err
    assert not (tmp_path / "report.md").exists()


def test_submitit_executor(tmp_path, family_models, data_dir):
    """The Slurm code path (submitit), run on this machine by submitit's local cluster."""
    path = study_file(tmp_path, family_models, data_dir, **{"grid.replay": [0.0], "controls": {"scratch": False, "source": False}})
    assert main(["study", path, "--executor", "submitit-local", "--executor-param", "timeout_min=10"]) == 0
    found = rows(tmp_path / "study")
    assert [(k, s) for k, _, s, _ in found] == [("prune-activation-t0-none-seed0", "done"),
                                                ("train-activation-t0-none-seed0-cosine0-replay0-tok512", "done")]
    assert any((tmp_path / "study" / "submitit").iterdir())  # submitit's job logs


@pytest.mark.parametrize("executor,message", [("kubernetes", r"unknown executor 'kubernetes'; allowed: local, slurm, submitit-local"),
                                              ("slurm", r"executor 'slurm' needs Slurm's sbatch on PATH")])
def test_bad_executor(executor, message, tmp_path, family_models, data_dir, capsys):
    import re
    import shutil

    if executor == "slurm" and shutil.which("sbatch"):
        pytest.skip("this machine has Slurm")
    path = study_file(tmp_path, family_models, data_dir)
    assert main(["study", path, "--executor", executor]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_report_plots_dynamic_weights(tmp_path, family_models, data_dir):
    path = study_file(tmp_path, family_models, data_dir,
                      **{"grid.dynamic": [None, {"reference": "source", "interval": 2}],
                         "controls": {"scratch": False, "source": False}})
    assert main(["study", path]) == 0
    trains = sorted(k for k, kind, _, _ in rows(tmp_path / "study") if kind == "train")
    assert trains == [  # replay 0 has one domain: no dynamic variant of it
        "train-activation-t0-none-seed0-cosine0-replay0-tok512",
        "train-activation-t0-none-seed0-cosine0-replay0.25-tok512",
        "train-activation-t0-none-seed0-cosine0.dyn1-replay0.25-tok512",
    ]
    assert main(["report", str(tmp_path / "study")]) == 0
    report = json.loads((tmp_path / "study" / "report.json").read_text())
    assert "domain weights" in report["figures"]
    assert {r["cell"] for r in report["ranking"]} == {"cosine0-replay0-tok512", "cosine0-replay0.25-tok512",
                                                       "cosine0.dyn1-replay0.25-tok512"}
    run = tmp_path / "study" / "runs" / "train-activation-t0-none-seed0-cosine0.dyn1-replay0.25-tok512"
    assert [r["step"] for r in read_metrics(run) if r["event"] == "mixture"] == [0, 2, 4]


@pytest.mark.parametrize("family", ["gemma3", "phi3"])
def test_a_study_starts_from_a_newer_family(family, tmp_path, family_models, data_dir):
    """A study on Gemma-3 (scaled embedding, 1 + w norms, sliding layers) and Phi-3 (stacked fused
    projections): every run finishes and each pruned start has the target's shape."""
    from conftest import FAMILY_TARGETS

    target = FAMILY_TARGETS[family]
    path = study_file(tmp_path, family_models, data_dir, source={"model": str(family_models[family])},
                      **{"grid.target": [target], "grid.replay": [0.0], "grid.method": ["activation", "sheared"],
                         "prune": {"calibration_samples": 8, "batch_size": 4, "sheared": {"steps": 2}}})
    assert main(["study", path]) == 0
    found = rows(tmp_path / "study")
    assert len(found) == 2 + 1 + 4 and all(status == "done" for _, _, status, _ in found)
    for method in ("activation", "sheared"):
        config = json.loads((tmp_path / "study" / "runs" / f"prune-{method}-t0-none-seed0" / "config.json").read_text())
        assert {k: config[k] for k in target} == target and config["model_type"] == family_models[family].name.replace(
            "gemma3", "gemma3_text")


def test_a_study_grid_varies_the_expert_count(tmp_path, family_models, data_dir):
    """A Mixtral source, a grid over the number of experts (and top-k): every run finishes, each
    pruned start has its expert count, and the report ranks the cells."""
    targets = [{"num_experts": 6}, {"num_experts": 4, "num_experts_per_tok": 1}]
    path = study_file(tmp_path, family_models, data_dir, source={"model": str(family_models["mixtral"])},
                      **{"grid.target": targets, "grid.replay": [0.0]})
    assert main(["study", path]) == 0
    found = rows(tmp_path / "study")
    assert found and all(status == "done" for _, _, status, _ in found)
    for index, target in enumerate(targets):
        config = json.loads((tmp_path / "study" / "runs" / f"prune-activation-t{index}-none-seed0" / "config.json").read_text())
        assert config["num_local_experts"] == target["num_experts"]
        assert config["num_experts_per_tok"] == target.get("num_experts_per_tok", 2)
    assert main(["report", str(tmp_path / "study")]) == 0
    report = json.loads((tmp_path / "study" / "report.json").read_text())
    starts = {r["start"] for r in report["ranking"]}
    assert {"activation-t0-none", "activation-t1-none", "scratch-t0", "scratch-t1", "source"} <= starts
