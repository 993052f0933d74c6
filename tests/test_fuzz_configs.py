"""Property-based fuzzing of the files users write: recipes, target specs and study files.

Random keys get random values of random types (NaN and infinities included); whatever the file
says, regrow answers with exit code 0 or 2 and one clean line, never a traceback. A recipe or
study that passes every check is not run to its end here: the loop and the runs are replaced by
stand-ins, since this tests what happens before any work.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
import yaml
from badinput import run_cli
from conftest import recipe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regrow.config import set_dotted

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=6), scalars, max_size=3))


def check_clean(capsys, argv) -> None:
    capsys.readouterr()
    rc = run_cli(argv)
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc in (0, 2), f"exit {rc}: {captured.err[-2000:]}"
    assert "Traceback" not in captured.err
    if rc == 2:
        assert len(err) == 1 and err[0].startswith("regrow: error: "), captured.err


RECIPE_KEYS = [
    "seed", "tokenizer", "out_dir", "model.config.hidden_size", "model.config.num_attention_heads",
    "model.config.model_type", "model.init", "model.trust_remote_code", "data.seq_len", "data.mixture.prose",
    "data.mixture", "data.new_domains", "data.dynamic", "data.dynamic.eta", "data.dynamic.reference",
    "train.steps", "train.batch_size", "train.grad_clip", "train.weight_decay", "train.betas", "train.eps",
    "train.precision", "train.eval_tokens", "train.save_at_tokens", "train.distill", "train.keep_checkpoints",
    "schedule", "schedule.name", "schedule.lr_max", "schedule.lr_min", "schedule.warmup_steps",
    "schedule.total_steps", "schedule.decay_fraction", "schedule.lr_const", "schedule.cooldown_steps",
    "unknown_key", "train.unknown",
]


@pytest.fixture
def quick_training(monkeypatch):
    """Everything up to the first step runs (all checks, data, tokenizer, model); the loop does not."""
    from regrow.train.trainer import Trainer

    def no_loop(self):
        return {"out_dir": str(self.out), "steps": 0, "tokens": 0, "train_seconds": 0.0, "flops": 0.0,
                "domains": {}, "forgetting": 0.0, "adaptation": 0.0}

    monkeypatch.setattr(Trainer, "run", no_loop)


@SETTINGS
@given(changes=st.lists(st.tuples(st.sampled_from(RECIPE_KEYS), values), min_size=1, max_size=3))
def test_fuzzed_recipes(changes, tokenizer_dir, data_dir, quick_training, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        data = recipe(tokenizer_dir, data_dir, Path(tmp) / "run")
        for key, value in changes:
            set_dotted(data, key.split("."), copy.deepcopy(value))
        path = Path(tmp) / "r.yaml"
        path.write_text(yaml.safe_dump(data))
        check_clean(capsys, ["train", str(path)])


TARGET_KEYS = ["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
               "intermediate_size", "model_type", "vocab_size", "head_dim", "layers"]


@SETTINGS
@given(spec=st.dictionaries(st.sampled_from(TARGET_KEYS), values, max_size=4), as_json=st.booleans())
def test_fuzzed_targets(spec, as_json, family_models, capsys):
    import json

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("t.json" if as_json else "t.yaml")
        try:
            path.write_text(json.dumps(spec, allow_nan=True) if as_json else yaml.safe_dump(spec))
        except ValueError:
            return
        check_clean(capsys, ["prune", "--model", str(family_models["llama"]), "--target", str(path),
                             "--method", "magnitude", "--out", str(Path(tmp) / "out"), "--no-progress"])


STUDY_KEYS = [
    "out_dir", "tokenizer", "source.model", "source.pretrain", "data.path", "data.old", "data.new", "data.seq_len",
    "grid.method", "grid.target", "grid.target_ratio", "grid.reinit", "grid.schedule", "grid.replay", "grid.tokens",
    "grid.dynamic", "grid.seed", "controls.scratch", "prune", "prune.calibration_samples", "prune.streaming",
    "train", "train.batch_size", "train.grad_clip", "unknown",
]


@pytest.fixture
def no_runs(monkeypatch):
    """A study that passes every check does not run its cells here."""
    import regrow.study.executors.local as local

    monkeypatch.setattr(local, "execute", lambda kind, config, threads=None: ({}, 0.0))


@SETTINGS
@given(changes=st.lists(st.tuples(st.sampled_from(STUDY_KEYS), values), min_size=1, max_size=3))
def test_fuzzed_studies(changes, family_models, data_dir, no_runs, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        study = {
            "out_dir": str(Path(tmp) / "study"),
            "source": {"model": str(family_models["llama"])},
            "data": {"path": str(data_dir), "old": ["prose"], "new": ["code"], "seq_len": 32},
            "grid": {"method": ["activation"], "target_ratio": [0.5], "tokens": [512],
                     "schedule": [{"name": "cosine", "warmup_steps": 1}]},
            "prune": {"calibration_samples": 8, "batch_size": 4},
            "train": {"batch_size": 4, "eval_tokens": 256},
        }
        for key, value in changes:
            set_dotted(study, key.split("."), copy.deepcopy(value))
        path = Path(tmp) / "study.yaml"
        path.write_text(yaml.safe_dump(study))
        check_clean(capsys, ["study", str(path)])
