"""regrow sensitivity / probe / eval --tasks / fit on real (tiny) runs, and their bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import recipe
from safetensors.torch import load_file

from regrow.analysis.sensitivity import perturbed, restore
from regrow.cli.main import main
from regrow.config import from_dict
from regrow.models.hf import load_model
from regrow.study.index import StudyIndex
from regrow.study.runner import INDEX_FILE, STUDY_FILE
from regrow.train.config import RunConfig
from regrow.train.trainer import train

TOKENS_PER_STEP = 4 * 32  # batch_size x seq_len of conftest.recipe


@pytest.fixture(scope="module")
def snapshot_run(tokenizer_dir, data_dir, tmp_path_factory):
    """8 prose steps with snapshots after 2 and 8 steps' worth of tokens (the last = the final model)."""
    out = tmp_path_factory.mktemp("snap") / "run"
    cfg = recipe(tokenizer_dir, data_dir, out, data={"path": str(data_dir), "mixture": {"prose": 1.0}, "seq_len": 32})
    cfg["train"].update(steps=8, save_at_tokens=[2 * TOKENS_PER_STEP - 5, 8 * TOKENS_PER_STEP])
    train(from_dict(RunConfig, cfg))
    return out


def snapshots(run) -> list[str]:
    return [str(p) for p in sorted((run / "snapshots").iterdir(), key=lambda p: int(p.name.split("-")[1]))]


def test_snapshots_at_token_counts(snapshot_run):
    first = snapshot_run / "snapshots" / f"tokens-{2 * TOKENS_PER_STEP - 5}"
    last = snapshot_run / "snapshots" / f"tokens-{8 * TOKENS_PER_STEP}"
    assert json.loads((first / "snapshot.json").read_text())["step"] == 2  # the first step that reaches the count
    assert json.loads((last / "snapshot.json").read_text())["tokens"] == 8 * TOKENS_PER_STEP
    final, snap = load_file(snapshot_run / "model" / "model.safetensors"), load_file(last / "model.safetensors")
    assert all(torch.equal(final[k], snap[k]) for k in final)
    early = load_file(first / "model.safetensors")
    assert not all(torch.equal(final[k], early[k]) for k in final)


def test_perturbation_follows_the_noise_definition(snapshot_run):
    model = load_model(snapshot_run / "model")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    std = model.config.initializer_range
    saved = perturbed(model, 0.5, seed=3, noise="init", init_std=std)
    for name, param in model.named_parameters():
        delta = param.detach() - before[name]
        if param.dim() >= 2:
            assert float(delta.std()) == pytest.approx(0.5 * std, rel=0.1), name
        else:
            assert torch.equal(delta, torch.zeros_like(delta)), name  # norms: no init spread, untouched
    restore(model, saved)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    # the same seed gives the same noise (common random numbers across gammas and checkpoints)
    again = perturbed(model, 1.0, seed=3, noise="relative", init_std=std)
    first = {n: (p.detach() - before[n]) for n, p in model.named_parameters()}
    restore(model, again)
    perturbed(model, 1.0, seed=3, noise="relative", init_std=std)
    assert all(torch.equal(p.detach() - before[n], first[n]) for n, p in model.named_parameters())


def test_sensitivity_cli_grows_with_gamma(snapshot_run, data_dir, tmp_path, capsys):
    models = snapshots(snapshot_run)
    out, plot = tmp_path / "sens.json", tmp_path / "sens.png"
    args = ["sensitivity", "--model", *models, "--data", str(data_dir), "--gamma", "0.5", "4", "--seeds", "2",
            "--seq-len", "32", "--max-tokens", "2048", "--json", "--out", str(out), "--plot", str(plot)]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text())["kind"] == "sensitivity" and plot.stat().st_size > 1000
    assert [m["tokens"] for m in result["models"]] == [2 * TOKENS_PER_STEP, 8 * TOKENS_PER_STEP]
    for m in result["models"]:
        for domain in ("prose", "code"):
            small, large = m["sensitivity"]["0.5"][domain], m["sensitivity"]["4"][domain]
            assert len(small["values"]) == 2 and small["mean"] == pytest.approx(np.mean(small["values"]))
            assert large["mean"] > small["mean"] and large["mean"] > 0


def test_probe_reports_gain_and_out_of_domain_change(snapshot_run, data_dir, tmp_path, capsys):
    models = snapshots(snapshot_run)
    base = ["probe", "--model", *models, "--data", str(data_dir), "--steps", "4", "--lr", "3e-3", "--batch-size", "4",
            "--seq-len", "32", "--eval-tokens", "1024", "--device", "cpu"]
    args = [*base, "--finetune", "code", "--work-dir", str(tmp_path / "work"), "--json", "--plot", str(tmp_path / "probe.png")]
    assert main(args) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 2 and (tmp_path / "probe.png").is_file()
    for r in results:
        code, prose = r["domains"]["code"], r["domains"]["prose"]
        assert r["in_domain_gain"] == pytest.approx(code["loss_start"] - code["loss_end"])
        assert r["out_of_domain_change"] == pytest.approx(prose["loss_end"] - prose["loss_start"])
        assert r["in_domain_gain"] > 0  # 4 steps on code at a high LR lower the code loss
    assert main([*base, "--finetune", "poetry"]) == 2  # not a domain
    err = capsys.readouterr().err
    assert "poetry" in err and len(err.strip().splitlines()) == 1


def test_eval_tasks_with_the_harness_on_a_local_task(snapshot_run, tmp_path, capsys):
    """A multiple-choice task on local JSONL: the harness's accuracy = argmax of our own log-likelihoods."""
    pytest.importorskip("lm_eval")
    from regrow.data.tokenizer import load_tokenizer

    model_dir = snapshot_run / "model"
    docs = [{"question": "def parse(self, text):\n    return", "choices": [" self", " None", " json"], "label": i % 3}
            for i in range(3)] + [{"question": "The value of the", "choices": [" string", " list"], "label": 0}]
    data = tmp_path / "tasks" / "docs.jsonl"
    data.parent.mkdir()
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    (data.parent / "tiny.yaml").write_text(yaml.safe_dump({
        "task": "regrow_tiny_choice", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}", "doc_to_target": "{{label}}", "metric_list": [{"metric": "acc"}]}))
    args = ["eval", "--model", str(model_dir), "--tasks", "regrow_tiny_choice", "--include-path", str(data.parent),
            "--device", "cpu", "--json"]
    assert main(args) == 0
    acc = json.loads(capsys.readouterr().out)["tasks"]["regrow_tiny_choice"]["acc,none"]

    model, tok = load_model(model_dir).eval(), load_tokenizer(model_dir)
    hits = 0
    for d in docs:
        scores = []
        context = tok(d["question"])["input_ids"]
        for choice in d["choices"]:
            whole = tok(d["question"] + choice)["input_ids"]
            ids = torch.tensor([whole])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
            scores.append(sum(float(logp[i - 1, whole[i]]) for i in range(len(context), len(whole))))
        hits += int(np.argmax(scores) == d["label"])
    assert acc == pytest.approx(hits / len(docs))
    assert main(["eval", "--model", str(model_dir), "--tasks", "no_such_task", "--include-path", str(data.parent)]) == 2
    err = capsys.readouterr().err
    assert "no_such_task" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["task", "included"])
def test_eval_refuses_task_files_that_run_code_unless_allowed(where, snapshot_run, tmp_path, capsys):
    """A task YAML with `!function` makes the harness import Python from the task folder: refused
    (one line naming the file, exit 2, the code not run) unless --allow-code; also when the hook
    sits in a YAML file the task includes from elsewhere."""
    pytest.importorskip("lm_eval")
    model_dir = snapshot_run / "model"
    tasks, shared = tmp_path / "tasks", tmp_path / "shared"
    tasks.mkdir()
    shared.mkdir()
    marker = tmp_path / "code-ran"
    data = tasks / "docs.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}", "choices": [" a", " b"], "label": i % 2}) + "\n"
                            for i in range(4)))
    for folder in (tasks, shared):
        (folder / "utils.py").write_text(f"open({str(marker)!r}, 'w').close()\n\ndef process_docs(docs):\n    return docs\n")
    body = {"task": "regrow_hooked", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
            "doc_to_choice": "{{choices}}", "doc_to_target": "{{label}}", "metric_list": [{"metric": "acc"}]}
    hook = "process_docs: !function utils.process_docs\n"
    if where == "task":
        (tasks / "hooked.yaml").write_text(yaml.safe_dump(body) + hook)
        named = tasks / "hooked.yaml"
    else:
        (shared / "base.yaml").write_text(hook)
        (tasks / "hooked.yaml").write_text(f"include: {shared / 'base.yaml'}\n" + yaml.safe_dump(body))
        named = shared / "base.yaml"
    args = ["eval", "--model", str(model_dir), "--tasks", "regrow_hooked", "--include-path", str(tasks), "--device", "cpu"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"task file {named}:" in err[0] and "--allow-code" in err[0], err
    assert not marker.exists()
    assert main([*args, "--allow-code", "--json"]) == 0  # asked for: the hook runs
    assert marker.exists()
    assert main(["eval", "--model", str(model_dir), "--tasks", "x", "--allow-code"]) == 2
    assert "--allow-code concerns the task files of --include-path only" in capsys.readouterr().err


def test_fit_cli_on_a_csv_and_its_bad_input(tmp_path, capsys):
    d = np.geomspace(1e5, 1e7, 8)
    loss = 2.0 + 300 / d ** 0.4
    good = tmp_path / "good.csv"
    good.write_text("D,loss\n" + "".join(f"{a},{b}\n" for a, b in zip(d, loss)))
    out, plot = tmp_path / "fit.json", tmp_path / "fit.png"
    assert main(["fit", "--law", "data", "--csv", str(good), "--bootstrap", "10", "--json", "--out", str(out),
                 "--plot", str(plot)]) == 0
    fit = json.loads(capsys.readouterr().out)["fits"][0]
    assert fit["parameters"]["beta"]["value"] == pytest.approx(0.4, rel=1e-3) and plot.stat().st_size > 1000
    assert json.loads(out.read_text())["law"] == "data"

    cases = {
        "few.csv": ("D,loss\n1e5,3\n1e6,2.5\n1e7,2.2\n", "needs at least 4 points"),
        "neg.csv": ("D,loss\n" + "".join(f"{a},{b}\n" for a, b in zip(-d, loss)), "non-positive value"),
        "nan.csv": ("D,loss\n" + "".join(f"{a},{b}\n" for a, b in zip(d, loss)) + "1e8,nan\n", "is nan; every value must be a finite number"),
        "cols.csv": ("tokens,value\n1,2\n", "needs column(s) D, loss"),
        "zero.csv": ("D,loss\n" + "".join(f"{a},{b}\n" for a, b in zip(d, 0 * loss)), "non-positive value"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        out = tmp_path / f"{name}.json"
        assert main(["fit", "--law", "data", "--csv", str(path), "--out", str(out)]) == 2, name
        assert message in capsys.readouterr().err, name
        assert not out.exists()
    chin = tmp_path / "chin.csv"
    chin.write_text("N,D,loss\n" + "".join(f"1e6,{a},{b}\n" for a, b in zip(d, loss)))
    assert main(["fit", "--law", "chinchilla", "--csv", str(chin)]) == 2
    assert "2 distinct N" in capsys.readouterr().err


def test_bad_analysis_arguments_exit_2(snapshot_run, data_dir, tmp_path, capsys):
    model = str(snapshot_run / "model")
    out = tmp_path / "s.json"
    for gamma in ("0", "-1"):
        assert main(["sensitivity", "--model", model, "--data", str(data_dir), "--gamma", gamma, "--out", str(out)]) == 2
        assert "must be > 0" in capsys.readouterr().err
    assert not out.exists()
    assert main(["sensitivity", "--model", model, "--data", str(data_dir), "--seeds", "0"]) == 2
    assert "--seeds is 0" in capsys.readouterr().err
    assert main(["probe", "--model", model, "--data", str(data_dir), "--finetune", "code", "--steps", "2",
                 "--lr", "0"]) == 2
    assert "--lr is 0" in capsys.readouterr().err
    empty = tmp_path / "empty_study"
    empty.mkdir()
    assert main(["fit", "--law", "data", "--study", str(empty)]) == 2
    assert "not a study folder" in capsys.readouterr().err
    StudyIndex(empty / INDEX_FILE).close()  # a study whose runs have not finished
    (empty / STUDY_FILE).write_text(yaml.safe_dump({"data": {"old": ["prose"], "new": ["code"]}}))
    assert main(["fit", "--law", "data", "--study", str(empty)]) == 2
    assert "no finished training run" in capsys.readouterr().err
