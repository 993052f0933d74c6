"""The annealing law on real runs: fitted on a constant and a cosine run, it must predict a WSD
run's final loss better than a power law in steps fitted on the same points (docs/ALGORITHMS.md §7)."""

from __future__ import annotations

import json

import pytest
from conftest import recipe

from regrow.cli.main import main
from regrow.config import from_dict
from regrow.train.config import RunConfig
from regrow.train.trainer import train

STEPS = 160
SCHEDULES = {
    "constant": {"name": "constant", "lr_max": 3e-3, "warmup_steps": 10},
    "cosine": {"name": "cosine", "lr_max": 3e-3, "lr_min": 3e-4, "warmup_steps": 10},
    "wsd": {"name": "wsd", "lr_max": 3e-3, "lr_min": 3e-4, "warmup_steps": 10, "decay_fraction": 0.25},
}


@pytest.fixture(scope="module")
def schedule_runs(tokenizer_dir, data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("annealing")
    for name, schedule in SCHEDULES.items():
        cfg = recipe(tokenizer_dir, data_dir, root / name, schedule=schedule,
                     data={"path": str(data_dir), "mixture": {"prose": 1.0}, "seq_len": 32})
        cfg["train"].update(steps=STEPS, eval_every=10, eval_tokens=4096, log_every=20)
        train(from_dict(RunConfig, cfg))
    return root


def test_annealing_law_beats_a_power_law_on_a_wsd_run(schedule_runs, capsys):
    args = ["fit", "--law", "annealing", "--runs", str(schedule_runs / "constant"), str(schedule_runs / "cosine"),
            "--domain", "prose", "--predict", str(schedule_runs / "wsd"), "--min-step", "20", "--bootstrap", "10",
            "--json"]
    assert main(args) == 0
    prediction = json.loads(capsys.readouterr().out)["prediction"]
    assert prediction["warnings"] == []
    assert abs(prediction["error"]) < abs(prediction["power_law_error"]), prediction
    print(f"annealing law error {prediction['error']:+.4f}, power law {prediction['power_law_error']:+.4f}")


def test_prediction_warns_on_zero_lr_tail_and_larger_peak(schedule_runs, tmp_path, capsys):
    base = ["fit", "--law", "annealing", "--runs", str(schedule_runs / "constant"), str(schedule_runs / "cosine"),
            "--domain", "prose", "--bootstrap", "0", "--predict"]
    for name, schedule, message in (
        ("zero", {"name": "wsd", "lr_max": 3e-3, "lr_min": 0.0, "warmup_steps": 10}, "at LR 0"),
        ("hot", {"name": "cosine", "lr_max": 1e-2, "lr_min": 1e-3, "warmup_steps": 10}, "above the largest peak"),
    ):
        path = tmp_path / f"{name}.yaml"
        # a recipe that has not run: only its schedule and train.steps matter
        path.write_text(json.dumps({"train": {"steps": STEPS + (40 if name == "zero" else 0)}, "schedule": schedule}))
        assert main([*base, str(path)]) == 0
        assert message in capsys.readouterr().err
