"""The trainer's callbacks and loggers: a callback registered from outside regrow and named in a
recipe runs at every step; W&B logs offline; bad names are refused at load."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from conftest import recipe

from regrow.cli.main import main
from regrow.config import from_dict
from regrow.train.callbacks import CALLBACKS, Callback
from regrow.train.config import RunConfig
from regrow.train.metrics import read_metrics
from regrow.train.trainer import train

SHORT = {"steps": 5, "batch_size": 2, "log_every": 1, "eval_tokens": 256, "progress": False}


def test_a_callback_registered_from_a_test_runs_from_the_recipe(tokenizer_dir, data_dir, tmp_path):
    seen = []

    @CALLBACKS.register("test_step_recorder")
    class StepRecorder(Callback):
        def __init__(self, every: int = 1):
            self.every = every

        def on_start(self, trainer):
            seen.append(("start", trainer.step))

        def on_step(self, trainer, info):
            if info.step % self.every == 0:
                seen.append(("step", info.step, info.tokens, info.loss))

        def on_end(self, trainer):
            seen.append(("end", trainer.step))

    try:
        cfg = recipe(tokenizer_dir, data_dir, tmp_path / "run", train={**SHORT, "callbacks": [
            {"name": "test_step_recorder", "every": 2}]})
        train(from_dict(RunConfig, cfg))
    finally:
        CALLBACKS.unregister("test_step_recorder")
    logged = {r["step"]: r for r in read_metrics(tmp_path / "run") if r["event"] == "train"}
    tokens_per_step = logged[1]["tokens"]
    assert seen[0] == ("start", 0) and seen[-1] == ("end", 5)
    assert [s[1] for s in seen[1:-1]] == [2, 4]
    for _, step, tokens, loss in seen[1:-1]:  # the step the trainer handed over is the one it logged
        assert tokens == step * tokens_per_step and loss == logged[step]["loss"]


def test_unknown_callback_and_logger_names_are_refused(tokenizer_dir, data_dir, tmp_path, capsys):
    for key, value, expected in (
        ("callbacks", [{"name": "nope"}], "train.callbacks[0] names callback 'nope'; registered: "),
        ("loggers", ["nope"], "train.loggers names 'nope'; allowed: tensorboard, wandb"),
    ):
        path = tmp_path / f"{key}.yaml"
        path.write_text(yaml.safe_dump(recipe(tokenizer_dir, data_dir, tmp_path / key, train={**SHORT, key: value})))
        assert main(["train", str(path)]) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / key).exists()


def test_wandb_logs_offline_and_a_resume_continues(tokenizer_dir, data_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the default must be offline: no network here
    monkeypatch.setenv("WANDB_SILENT", "true")
    path = tmp_path / "run.yaml"
    keys = {**SHORT, "loggers": ["wandb"], "checkpoint_every": 3, "steps": 3}
    schedule = {"name": "cosine", "lr_max": 3e-3, "lr_min": 3e-4, "warmup_steps": 1, "total_steps": 5}
    path.write_text(yaml.safe_dump(recipe(tokenizer_dir, data_dir, tmp_path / "run", train=keys, schedule=schedule)))
    assert main(["train", str(path)]) == 0
    assert main(["train", str(path), "--set", "train.steps=5", "--resume"]) == 0
    losses = [r["loss"] for r in read_metrics(tmp_path / "run") if r["event"] == "train"]
    assert len(losses) == 5

    def logged() -> tuple[list[Path], bytes]:
        runs = sorted((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
        return runs, b"".join(p.read_bytes() for p in runs)

    # W&B's service process writes the log file behind the run; on a loaded machine its last
    # records may land shortly after `finish` returns: give it up to 30 s
    deadline = time.monotonic() + 30
    runs, data = logged()
    while time.monotonic() < deadline and not all(repr(x).encode() in data or f"{x}".encode() in data for x in losses):
        time.sleep(0.5)
        runs, data = logged()
    assert runs, "no offline W&B run was written"
    assert len({p.name for p in runs}) == 1  # the resume continued the same W&B run id
    assert b"train/loss" in data and b"eval/" in data
    for loss in losses:  # W&B stores each value as JSON text
        assert repr(loss).encode() in data or f"{loss}".encode() in data
