"""Bad input to the commands that read runs and write records or figures: `eval`, `sensitivity`,
`probe`, `fit`, `schedule`, `report`, `study` and `demo`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from badinput import assert_refused, write_yaml
from conftest import recipe
from test_study import study_file

from regrow.cli.main import main
from regrow.config import from_dict
from regrow.train.config import RunConfig
from regrow.train.trainer import train


@pytest.fixture(scope="module")
def model_dir(tokenizer_dir, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis") / "run"
    cfg = recipe(tokenizer_dir, data_dir, out)
    cfg["train"].update(steps=3)
    train(from_dict(RunConfig, cfg))
    return out / "model"


def _foreign_json(path):
    path.write_text('{"my": "results"}')


def _foreign_png(path):
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)


def _folder(path):
    path.mkdir()


EVAL_CASES = {
    "model_missing": (["--model", "/nonexistent/model"], "model '/nonexistent/model' is not a folder"),
    "data_missing": (["--data", "/nonexistent/data"], "data folder '/nonexistent/data' is not a folder"),
    "seq_len_zero": (["--seq-len", "0"], "--seq-len is 0; it must be >= 1"),
    "batch_size_zero": (["--batch-size", "0"], "--batch-size is 0"),
    "max_tokens_zero": (["--max-tokens", "0"], "--max-tokens is 0"),
    "limit_zero": (["--tasks", "x", "--limit", "0"], "--limit is 0"),
    "fewshot_negative": (["--tasks", "x", "--num-fewshot", "-1"], "--num-fewshot is -1"),
    "unknown_domain": (["--domains", "german"], "domain 'german' is not in data folder"),
    "device": (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    "seq_len_too_long": (["--seq-len", "4096"], "--seq-len 4096 exceeds the model's 64 positions"),
}


@pytest.mark.parametrize("case", list(EVAL_CASES), ids=list(EVAL_CASES))
def test_eval(case, model_dir, data_dir, tmp_path, capsys):
    extra, expect = EVAL_CASES[case]
    argv = {"--model": model_dir, "--data": data_dir, "--seq-len": "32"}
    pairs = dict(zip(extra[::2], extra[1::2]))
    argv.update(pairs)
    flat = ["eval"] + [x for k, v in argv.items() for x in (k, v)]
    assert_refused(capsys, flat, expect, [tmp_path, data_dir, model_dir])


def test_eval_nothing_to_do(model_dir, capsys, tmp_path):
    assert_refused(capsys, ["eval", "--model", model_dir], "nothing to evaluate", [tmp_path])


def _data_copy(data_dir, tmp_path, damage):
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    damage(copy)
    return copy


def _truncate_tokens(folder):
    path = folder / "code" / "train-00000.bin"
    path.write_bytes(path.read_bytes()[:-6])


def _grow_tokens(folder):
    with open(folder / "prose" / "validation-00000.bin", "ab") as handle:
        handle.write(b"\x00\x00")


DATA_DAMAGE = {
    "tokens_truncated": (_truncate_tokens, "is truncated"),
    "tokens_longer": (_grow_tokens, "is longer than its manifest says"),
    "tokens_missing": (lambda f: (f / "code" / "validation-00000.bin").unlink(), "is missing"),
    "manifest_not_json": (lambda f: (f / "manifest.json").write_text("{"), "is not valid JSON"),
    "manifest_no_domains": (lambda f: (f / "manifest.json").write_text("{}"), "it lacks 'domains'"),
    "manifest_list": (lambda f: (f / "manifest.json").write_text("[]"), "must hold a JSON object"),
    "manifest_bad_dtype": (lambda f: (f / "manifest.json").write_text(
        (f / "manifest.json").read_text().replace('"uint16"', '"float128x"')), "lacks a valid dtype"),
    "manifest_missing": (lambda f: (f / "manifest.json").unlink(), "has no manifest.json"),
}


@pytest.mark.parametrize("case", list(DATA_DAMAGE), ids=list(DATA_DAMAGE))
def test_damaged_data_folder(case, model_dir, data_dir, tmp_path, capsys):
    damage, expect = DATA_DAMAGE[case]
    data = _data_copy(data_dir, tmp_path, damage)
    assert_refused(capsys, ["eval", "--model", model_dir, "--data", data, "--seq-len", "32"], expect, [tmp_path])


def test_damaged_data_in_a_recipe(tokenizer_dir, data_dir, tmp_path, capsys):
    data = _data_copy(data_dir, tmp_path, _truncate_tokens)
    path = write_yaml(tmp_path / "r.yaml", recipe(tokenizer_dir, data, tmp_path / "run"))
    assert_refused(capsys, ["train", path], "is truncated", [tmp_path])


SENSITIVITY_CASES = {
    "gamma_nan": (["--gamma", "nan"], None, "argument --gamma: 'nan' is not a finite number"),
    "gamma_inf": (["--gamma", "1", "inf"], None, "'inf' is not a finite number"),
    "gamma_zero": (["--gamma", "0"], None, "must be > 0"),
    "seeds_zero": (["--seeds", "0"], None, "--seeds"),
    "noise": (["--noise", "laplace"], None, "argument --noise: invalid choice"),
    "out_foreign": (["--out", "{tmp}/r.json"], ("r.json", _foreign_json), "was not written by this command"),
    "out_folder": (["--out", "{tmp}/r.json"], ("r.json", _folder), "is a folder; a file is expected here"),
    "plot_foreign": (["--plot", "{tmp}/p.png"], ("p.png", _foreign_png), "was not written by this command"),
    "plot_under_file": (["--plot", "{tmp}/f/p.png"], ("f", lambda p: p.write_text("x")), "is a file, not a folder"),
}


@pytest.mark.parametrize("case", list(SENSITIVITY_CASES), ids=list(SENSITIVITY_CASES))
def test_sensitivity(case, model_dir, data_dir, tmp_path, capsys):
    extra, make, expect = SENSITIVITY_CASES[case]
    if make is not None:
        make[1](tmp_path / make[0])
    extra = [x.format(tmp=tmp_path) for x in extra]
    argv = ["sensitivity", "--model", model_dir, "--data", data_dir, "--seq-len", "32", *extra]
    assert_refused(capsys, argv, expect, [tmp_path, model_dir])


PROBE_CASES = {
    "lr_nan": (["--lr", "nan"], "argument --lr: 'nan' is not a finite number"),
    "lr_zero": (["--lr", "0"], "--lr is 0"),
    "steps_zero": (["--steps", "0"], "--steps is 0"),
    "finetune_unknown": (["--finetune", "german"], "--finetune 'german' is not a domain"),
    "eval_tokens_zero": (["--eval-tokens", "0"], "--eval-tokens is 0"),
    "warmup_negative": (["--warmup-steps", "-1"], "--warmup-steps is -1; it must be >= 0"),
    "schedule_unknown": (["--schedule", "triangle"], "--schedule 'triangle' is unknown"),
    "out_foreign": (["--out", "{tmp}/r.json"], "was not written by this command"),
    "work_dir_foreign": (["--work-dir", "{tmp}/work"], "already exists and is not a probe work folder"),
    "work_dir_file": (["--work-dir", "{tmp}/r.json"], "is a file; a folder is expected here"),
}


@pytest.mark.parametrize("case", list(PROBE_CASES), ids=list(PROBE_CASES))
def test_probe(case, model_dir, data_dir, tmp_path, capsys):
    extra, expect = PROBE_CASES[case]
    _foreign_json(tmp_path / "r.json")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "results.csv").write_text("mine")
    flags = {"--model": model_dir, "--data": data_dir, "--finetune": "code", "--steps": "2", "--lr": "1e-3",
             "--seq-len": "32"}
    flags.update(dict(zip(extra[::2], [x.format(tmp=tmp_path) for x in extra[1::2]])))
    argv = ["probe"] + [x for k, v in flags.items() for x in (k, v)]
    assert_refused(capsys, argv, expect, [tmp_path, model_dir])


def _curve_csv(path, rows=None):
    d = np.geomspace(1e5, 1e7, 8)
    loss = 2.0 + 300 / d ** 0.4
    text = "D,loss\n" + "".join(f"{a},{b}\n" for a, b in zip(d, loss)) + (rows or "")
    path.write_text(text)
    return path


FIT_CSV = {
    "inf_loss": ("1e8,inf\n", "column 'loss' is inf; every value must be a finite number"),
    "neg_inf_size": ("-inf,2.0\n", "column 'D' is -inf"),
    "nan_size": ("nan,2.0\n", "column 'D' is nan"),
    "word": ("1e8,low\n", "column 'loss' has 'low', not a number"),
    "ragged": ("1e8,2.0,3\n", "line 10 has 3 cells; the header has 2"),
}


@pytest.mark.parametrize("case", list(FIT_CSV), ids=list(FIT_CSV))
def test_fit_csv_values(case, tmp_path, capsys):
    extra, expect = FIT_CSV[case]
    path = _curve_csv(tmp_path / "c.csv", extra)
    assert_refused(capsys, ["fit", "--law", "data", "--csv", path], expect, [tmp_path])


FIT_FILES = {
    "binary": (b"\x00\x01\x02\x03", "is a binary file"),
    "not_utf8": ("D,loss\n1e5,3 \xe9\n".encode("latin-1"), "is not UTF-8 text"),
    "empty": (b"", "is empty; it needs a header row"),
    "duplicate_column": (b"D,loss,D\n1,2,3\n", "names column 'D' twice"),
}


@pytest.mark.parametrize("case", list(FIT_FILES), ids=list(FIT_FILES))
def test_fit_csv_files(case, tmp_path, capsys):
    content, expect = FIT_FILES[case]
    (tmp_path / "c.csv").write_bytes(content)
    assert_refused(capsys, ["fit", "--law", "data", "--csv", tmp_path / "c.csv"], expect, [tmp_path])


FIT_FLAGS = {
    "csv_missing": (["--csv", "/nonexistent.csv"], "does not exist"),
    "level_nan": (["--level", "nan"], "argument --level: 'nan' is not a finite number"),
    "level_above_one": (["--level", "1.5"], "--level"),
    "bootstrap_negative": (["--bootstrap", "-1"], "--bootstrap"),
    "law_unknown": (["--law", "moore"], "argument --law: invalid choice: 'moore'"),
    "out_foreign": (["--out", "{tmp}/foreign.json"], "was not written by this command"),
    "plot_foreign": (["--plot", "{tmp}/foreign.png"], "was not written by this command"),
    "plot_folder": (["--plot", "{tmp}"], "is a folder; a file is expected here"),
    "runs_missing": (["--runs", "/nonexistent/run"], "/nonexistent/run"),
    "study_not_study": (["--study", "{tmp}"], "not a study folder"),
}


@pytest.mark.parametrize("case", list(FIT_FLAGS), ids=list(FIT_FLAGS))
def test_fit_flags(case, tmp_path, capsys):
    extra, expect = FIT_FLAGS[case]
    _foreign_json(tmp_path / "foreign.json")
    _foreign_png(tmp_path / "foreign.png")
    path = _curve_csv(tmp_path / "c.csv")
    flags = {"--law": "data", "--csv": str(path), "--bootstrap": "0"}
    extra = [x.format(tmp=tmp_path) for x in extra]
    if extra[0] in ("--runs", "--study"):
        flags.pop("--csv")
    flags.update(dict(zip(extra[::2], extra[1::2])))
    argv = ["fit"] + [x for k, v in flags.items() for x in (k, v)]
    assert_refused(capsys, argv, expect, [tmp_path])


def test_fit_replaces_its_own_record_and_figure(tmp_path, capsys):
    """--out and --plot may replace what the same command wrote before (and nothing else)."""
    path = _curve_csv(tmp_path / "c.csv")
    argv = ["fit", "--law", "data", "--csv", str(path), "--bootstrap", "0", "--out", str(tmp_path / "r.json"),
            "--plot", str(tmp_path / "p.png")]
    assert main(argv) == 0
    first = (tmp_path / "r.json").read_text()
    (tmp_path / "r.json").write_text(first.replace('"law": "data"', '"law": "data"', 1))
    assert main(argv) == 0
    assert json.loads((tmp_path / "r.json").read_text())["law"] == "data"


SCHEDULE_CASES = {
    "lr_nan": ({"schedule": {"name": "cosine", "lr_max": float("nan")}, "train": {"steps": 10}}, [], "'schedule.lr_max' is nan"),
    "steps_zero": ({"schedule": {"name": "cosine"}, "train": {"steps": 10}}, ["--steps", "0"], "--steps 0 must be >= 1"),
    "unknown": ({"schedule": {"name": "zigzag"}, "train": {"steps": 10}}, [], "unknown schedule 'zigzag'"),
    "typo_key": ({"name": "wsd", "decay_shap": "sqrt", "total_steps": 10}, [], "unknown config key 'schedule.decay_shap'"),
    "plot_foreign": ({"name": "constant", "total_steps": 10}, ["--plot", "{tmp}/foreign.png"], "was not written by this command"),
    "plot_folder": ({"name": "constant", "total_steps": 10}, ["--plot", "{tmp}"], "is a folder"),
    "no_total": ({"name": "constant"}, [], "schedule.total_steps is not set"),
}


@pytest.mark.parametrize("case", list(SCHEDULE_CASES), ids=list(SCHEDULE_CASES))
def test_schedule(case, tmp_path, capsys):
    data, extra, expect = SCHEDULE_CASES[case]
    _foreign_png(tmp_path / "foreign.png")
    path = write_yaml(tmp_path / "s.yaml", data)
    assert_refused(capsys, ["schedule", path, *[x.format(tmp=tmp_path) for x in extra]], expect, [tmp_path])


def test_schedule_duplicate_key(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("name: cosine\ntotal_steps: 5\ntotal_steps: 50\n")
    assert_refused(capsys, ["schedule", tmp_path / "s.yaml"], "duplicated key 'total_steps'", [tmp_path])


REPORT_CASES = {
    "not_a_study": (["{tmp}"], "is not a study folder"),
    "missing": (["{tmp}/absent"], "absent"),
    "bootstrap_negative": (["{tmp}", "--fit-bootstrap", "-1"], "--fit-bootstrap is -1"),
    "jobs_zero": (["{tmp}", "--jobs", "0"], "--jobs is 0; it must be >= 1"),
}


@pytest.mark.parametrize("case", list(REPORT_CASES), ids=list(REPORT_CASES))
def test_report(case, tmp_path, capsys):
    extra, expect = REPORT_CASES[case]
    assert_refused(capsys, ["report", *[x.format(tmp=tmp_path) for x in extra]], expect, [tmp_path])


STUDY_CASES = {
    "schedule_unknown": ({"grid.schedule": [{"name": "triangle"}]}, "unknown schedule 'triangle'"),
    "schedule_typo": ({"grid.schedule": [{"name": "wsd", "decay_shap": "sqrt"}]}, "unknown config key 'schedule.decay_shap'"),
    "schedule_nan": ({"grid.schedule": [{"name": "cosine", "lr_max": float("nan")}]}, "'grid.schedule[0].lr_max' is nan"),
    "schedule_warmup": ({"grid.schedule": [{"name": "cosine", "warmup_steps": 1000}]}, "schedule.warmup_steps 1000 must be <"),
    "depth_with_width_target": ({"grid.method": ["depth"]}, "method 'depth' removes whole layers only"),
    "streaming_with_reinit": ({"grid.reinit": ["fire"], "prune": {"streaming": True, "calibration_samples": 8}},
                              "--reinit 'fire' needs the model in memory"),
    "streaming_sheared": ({"grid.method": ["sheared"], "prune": {"streaming": True}}, "--streaming cannot run method 'sheared'"),
    "method_unknown": ({"grid.method": ["optimal-brain-surgeon"]}, "unknown method 'optimal-brain-surgeon' in grid.method"),
    "reinit_unknown": ({"grid.reinit": ["lottery"]}, "unknown reinit 'lottery'"),
    "replay_nan": ({"grid.replay": [float("nan")]}, "'grid.replay[0]' is nan"),
    "replay_one": ({"grid.replay": [1.0]}, "grid.replay 1.0 is not a fraction"),
    "target_ratio_nan": ({"grid.target_ratio": [float("nan")]}, "'grid.target_ratio[0]' is nan"),
    "tokens_empty": ({"grid.tokens": []}, "grid.tokens is empty"),
    "new_empty": ({"data.new": []}, "data.new is empty"),
    "new_unknown": ({"data.new": ["german"]}, "name domain(s) german"),
    "data_missing": ({"data.path": "/nonexistent/data"}, "is not a folder"),
    "train_key_nan": ({"train": {"batch_size": 4, "weight_decay": float("nan")}}, "'train.weight_decay' is nan"),
    "train_batch_size_zero": ({"train": {"batch_size": 0}}, "train.batch_size is 0; it must be >= 1"),
    "train_batch_size_text": ({"train": {"batch_size": ""}}, "'train.batch_size' must be an integer"),
    "train_grad_clip_zero": ({"train": {"batch_size": 4, "grad_clip": 0}}, "train.grad_clip is 0.0"),
    "target_too_big": ({"grid.target": [{"hidden_size": 4096}]}, "target hidden_size 4096 is larger than the source's"),
    "unknown_key": ({"grid.methods": ["depth"]}, "unknown config key 'grid.methods'"),
    "source_missing": ({"source": {"model": "/nonexistent/model"}}, "is not an HF model folder"),
    "out_is_file": ({"out_dir": "{tmp}/notes.txt"}, "is a file; a folder is expected here"),
    "out_foreign": ({"out_dir": "{tmp}/foreign"}, "already exists and is not a study folder"),
}


@pytest.mark.parametrize("case", list(STUDY_CASES), ids=list(STUDY_CASES))
def test_study(case, tmp_path, family_models, data_dir, capsys):
    changes, expect = STUDY_CASES[case]
    (tmp_path / "notes.txt").write_text("notes")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "paper.pdf").write_bytes(b"%PDF")
    changes = {k: (v.format(tmp=tmp_path) if isinstance(v, str) else v) for k, v in changes.items()}
    path = study_file(tmp_path, family_models, data_dir, **changes)
    assert_refused(capsys, ["study", path], expect, [tmp_path, family_models["llama"], data_dir])


STUDY_FLAGS = {
    "jobs_zero": (["--jobs", "0"], "--jobs is 0"),
    "executor": (["--executor", "kubernetes"], "unknown executor 'kubernetes'"),
    "set_unknown": (["--set", "grid.methods=[depth]"], "unknown --set key 'grid.methods'"),
    "set_nan": (["--set", "grid.replay=[.nan]"], "'grid.replay[0]' is nan"),
}


@pytest.mark.parametrize("case", list(STUDY_FLAGS), ids=list(STUDY_FLAGS))
def test_study_flags(case, tmp_path, family_models, data_dir, capsys):
    extra, expect = STUDY_FLAGS[case]
    path = study_file(tmp_path, family_models, data_dir)
    assert_refused(capsys, ["study", path, *extra], expect, [tmp_path])


STUDY_FILES = {
    "duplicate": (b"out_dir: a\nout_dir: b\n", "duplicated key 'out_dir'"),
    "binary": (b"SQLite format 3\x00", "is a binary file"),
    "not_utf8": ("out_dir: \xe9tude\n".encode("latin-1"), "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(STUDY_FILES), ids=list(STUDY_FILES))
def test_study_files(case, tmp_path, capsys):
    content, expect = STUDY_FILES[case]
    (tmp_path / "study.yaml").write_bytes(content)
    assert_refused(capsys, ["study", tmp_path / "study.yaml"], expect, [tmp_path])


@pytest.mark.parametrize("command", ["status", "report", "run"])
def test_damaged_study_index(command, tmp_path, family_models, data_dir, capsys):
    path = study_file(tmp_path, family_models, data_dir)
    study = tmp_path / "study"
    study.mkdir()
    (study / "index.sqlite").write_bytes(b"this is not a database" * 50)
    if command == "report":
        (study / "study.yaml").write_text((tmp_path / "study.yaml").read_text())
    argv = {"status": ["study", "status", study], "report": ["report", study], "run": ["study", path]}[command]
    assert_refused(capsys, argv, "is damaged or not regrow's", [tmp_path])


def test_study_status_of_a_foreign_folder(tmp_path, capsys):
    assert_refused(capsys, ["study", "status", tmp_path], "is not a study folder", [tmp_path])


def test_demo_jobs(tmp_path, capsys):
    assert_refused(capsys, ["demo", "--out", tmp_path / "demo", "--jobs", "0"], "--jobs is 0; it must be >= 1",
                   [tmp_path])
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("case", ["file", "foreign"])
def test_demo_out(case, tmp_path, capsys):
    out = tmp_path / "demo"
    if case == "file":
        out.write_text("notes")
        expect = "is a file; a folder is expected here"
    else:
        out.mkdir()
        (out / "holiday.jpg").write_bytes(b"\xff\xd8")
        expect = "already exists and is not a regrow demo folder"
    assert_refused(capsys, ["demo", "--out", out], expect, [tmp_path])


def test_yaml_of_a_study_is_plain_data(tmp_path, capsys):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({"out_dir": "x"}) + "grid: !!python/name:os.system\n")
    assert_refused(capsys, ["study", tmp_path / "study.yaml"], "is not valid YAML", [tmp_path])
