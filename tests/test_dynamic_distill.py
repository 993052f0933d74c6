"""Dynamic batch loading, distillation and compute accounting in the trainer."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from conftest import recipe

from regrow.cli.main import main
from regrow.config import from_dict
from regrow.errors import RegrowError
from regrow.train.config import RunConfig
from regrow.train.distill import distillation_loss
from regrow.train.dynamic import fit_power_law, reference_losses, update_weights
from regrow.train.metrics import read_metrics
from regrow.train.trainer import train

SCHEDULE = {"name": "cosine", "lr_max": 3e-3, "lr_min": 3e-4, "warmup_steps": 2, "total_steps": 6}
TRAIN = {"steps": 6, "batch_size": 4, "log_every": 1, "eval_tokens": 512, "progress": False}


def test_paper_rule_with_made_up_losses():
    weights = {"a": 0.5, "b": 0.3, "c": 0.2}
    losses = {"a": 3.0, "b": 2.0, "c": 4.0}
    reference = {"a": 2.5, "b": 2.5, "c": 3.0}
    # paper: delta = max(l - r, 0) = (0.5, 0, 1.0); w * exp(delta), normalised
    raw = {"a": 0.5 * math.exp(0.5), "b": 0.3, "c": 0.2 * math.exp(1.0)}
    expected = {k: v / sum(raw.values()) for k, v in raw.items()}
    got = update_weights(weights, losses, reference)
    assert got == pytest.approx(expected, rel=1e-12)
    # released code: no clamp (b's delta -0.5 counts), eta, then smoothing towards uniform
    raw = {"a": 0.5 * math.exp(2 * 0.5), "b": 0.3 * math.exp(2 * -0.5), "c": 0.2 * math.exp(2 * 1.0)}
    code = {k: (1 - 1e-4) * v / sum(raw.values()) + 1e-4 / 3 for k, v in raw.items()}
    assert update_weights(weights, losses, reference, eta=2.0, clamp=False, smoothing=1e-4) == pytest.approx(code, rel=1e-12)
    # every loss at or below its reference: the paper's rule leaves the weights alone
    assert update_weights(weights, {"a": 1.0, "b": 1.0, "c": 1.0}, reference) == pytest.approx(weights)


def test_reference_losses_given_source_and_fitted():
    assert reference_losses({"a": 2.0, "b": 3}, ["a", "b"], None, 10) == {"a": 2.0, "b": 3.0}
    assert reference_losses("source", ["a"], {"a": 4.2, "b": 1.0}, 10) == {"a": 4.2}
    a, b, c = 50.0, 0.3, 1.7
    sizes = [{"params": n, "losses": {"x": a / n**b + c}} for n in (1e6, 1e7, 1e8, 1e9)]
    fitted = reference_losses({"fit": sizes}, ["x"], None, 3e7)["x"]
    assert fitted == pytest.approx(a / 3e7**b + c, rel=1e-3)
    assert fit_power_law([1e6, 1e7, 1e8], [a / n**b + c for n in (1e6, 1e7, 1e8)]) == pytest.approx((a, b, c), rel=2e-2)
    with pytest.raises(RegrowError, match="at least 3 model sizes"):
        reference_losses({"fit": sizes[:2]}, ["x"], None, 3e7)
    with pytest.raises(RegrowError, match="lacks domain"):
        reference_losses({"a": 1.0}, ["a", "b"], None, 10)


def test_dynamic_run_shifts_weight_and_resumes_exactly(tokenizer_dir, data_dir, tmp_path):
    dynamic = {"reference": {"prose": 0.0, "code": 100.0}, "interval": 2}  # prose far above its reference
    data = {"path": str(data_dir), "mixture": {"prose": 0.5, "code": 0.5}, "seq_len": 32, "dynamic": dynamic}
    whole = recipe(tokenizer_dir, data_dir, tmp_path / "whole", data=data, schedule=SCHEDULE, train=TRAIN)
    summary = train(from_dict(RunConfig, whole))
    mixtures = [r for r in read_metrics(tmp_path / "whole") if r["event"] == "mixture"]
    assert [r["step"] for r in mixtures] == [0, 2, 4, 6]
    prose = [r["mixture/prose"] for r in mixtures]
    assert prose[0] == 0.5 and all(b > a for a, b in zip(prose, prose[1:]))
    assert summary["mixture_end"]["prose"] == pytest.approx(prose[-1])
    tokens = summary["compute"]["tokens_per_domain"]
    assert sum(tokens.values()) == summary["tokens"] and tokens["prose"] > tokens["code"]

    split = recipe(tokenizer_dir, data_dir, tmp_path / "split", data=data, schedule=SCHEDULE,
                   train={**TRAIN, "steps": 3, "checkpoint_every": 3})
    path = tmp_path / "split.yaml"
    path.write_text(yaml.safe_dump(split))
    assert main(["train", str(path)]) == 0
    assert main(["train", str(path), "--set", "train.steps=6", "--resume"]) == 0
    rows = [[(r["event"], r["step"], r.get("loss"), r.get("mixture/prose")) for r in read_metrics(tmp_path / d)
             if r["event"] in ("train", "mixture")] for d in ("whole", "split")]
    assert rows[0] == rows[1]
    resumed = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert resumed["compute"]["tokens_per_domain"] == tokens
    # the interrupted run really did one more evaluation (its end at step 3): 512 tokens x 2 domains
    assert resumed["compute"]["eval_tokens"] == summary["compute"]["eval_tokens"] + 2 * 512


def test_bad_dynamic_reference(tokenizer_dir, data_dir, tmp_path):
    data = {"path": str(data_dir), "mixture": {"prose": 0.5, "code": 0.5}, "seq_len": 32,
            "dynamic": {"reference": {"prose": 1.0}, "interval": 2}}
    with pytest.raises(RegrowError, match=r"data.dynamic.reference lacks domain\(s\) code"):
        train(from_dict(RunConfig, recipe(tokenizer_dir, data_dir, tmp_path / "r", data=data, train=TRAIN, schedule=SCHEDULE)))


def test_distillation_loss_parts():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 11, generator=g), torch.randn(2, 5, 11, generator=g)
    y = torch.randint(0, 11, (2, 5), generator=g)
    loss, ce, kl = distillation_loss(s, t, y, weight=0.0, temperature=2.0)
    assert loss == ce == pytest.approx(float(torch.nn.functional.cross_entropy(s.reshape(-1, 11), y.reshape(-1))))
    assert float(distillation_loss(s, s, y, 1.0, 1.0)[2]) == pytest.approx(0.0, abs=1e-6)
    pt, ps = torch.softmax(t / 2, -1), torch.softmax(s / 2, -1)
    manual = float((pt * (pt.log() - ps.log())).sum(-1).mean() * 4)
    assert float(kl) == pytest.approx(manual, rel=1e-5)
    mixed = distillation_loss(s, t, y, 0.25, 2.0)[0]
    assert float(mixed) == pytest.approx(0.75 * float(ce) + 0.25 * float(kl), rel=1e-6)


def _status_bytes(key: str) -> int | None:
    """A size from /proc/self/status (read here, independently of regrow), in bytes."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def test_distilled_run_counts_the_teacher(tokenizer_dir, data_dir, tmp_path):
    teacher = train(from_dict(RunConfig, recipe(tokenizer_dir, data_dir, tmp_path / "teacher", train=TRAIN, schedule=SCHEDULE)))
    student = recipe(tokenizer_dir, data_dir, tmp_path / "student", schedule=SCHEDULE,
                     train={**TRAIN, "distill": {"teacher": str(tmp_path / "teacher" / "model"), "weight": 0.5, "temperature": 2.0}})
    rss_before = _status_bytes("VmRSS")
    summary = train(from_dict(RunConfig, student))
    peak_after = _status_bytes("VmHWM")
    rows = [r for r in read_metrics(tmp_path / "student") if r["event"] == "train"]
    assert all("kl" in r and "ce" in r and r["kl"] > 0 for r in rows)
    assert all(r["loss"] == pytest.approx(0.5 * r["ce"] + 0.5 * r["kl"], rel=1e-5) for r in rows)
    flops = summary["compute"]["flops"]
    assert flops["teacher"] == pytest.approx(summary["tokens"] * teacher["flops_per_token"] / 3)
    assert flops["total"] == pytest.approx(flops["train"] + flops["teacher"] + flops["eval"] + flops["pruning"])
    assert summary["compute"]["peak_memory_bytes"] > 0
    # the figure is this process's peak RSS: no lower than its RSS before the run, no higher than its peak after
    if peak_after is not None:
        assert rss_before <= summary["compute"]["peak_memory_bytes"] <= peak_after
    assert teacher["compute"]["flops"]["teacher"] == 0


def test_pruning_flops_carry_into_the_continued_run(tokenizer_dir, data_dir, family_models, tmp_path):
    out = tmp_path / "pruned"
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"num_hidden_layers": 2}))
    assert main(["prune", "--model", str(family_models["llama"]), "--target", str(tmp_path / "t.yaml"), "--method", "depth",
                 "--data", str(data_dir), "--seq-len", "32", "--calibration-samples", "8", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "pruning_report.json").read_text())
    cfg = recipe(tokenizer_dir, data_dir, tmp_path / "run", model={"init": str(out)}, tokenizer=None, train=TRAIN, schedule=SCHEDULE)
    summary = train(from_dict(RunConfig, cfg))
    assert summary["compute"]["flops"]["pruning"] == report["flops"] > 0


@pytest.mark.parametrize(
    "data_extra,train_extra,message",
    [
        ({"dynamic": {"interval": 0}}, {}, r"data.dynamic.interval is 0; it must be >= 1"),
        ({"dynamic": {"smoothing": 1.5}}, {}, r"data.dynamic.smoothing is 1.5; allowed: 0 <= c < 1"),
        ({"dynamic": {"reference": "teacher"}}, {}, r"data.dynamic.reference 'teacher' is not supported; allowed: source"),
        ({}, {"distill": {"weight": 0.5}}, r"train.distill.teacher is not set"),
        ({}, {"distill": {"teacher": "x", "weight": 2.0}}, r"train.distill.weight is 2.0; allowed: 0..1"),
        ({}, {"distill": {"teacher": "/nonexistent/teacher"}}, r"model '/nonexistent/teacher' is not a folder"),
    ],
)
def test_bad_dynamic_and_distill_recipes(data_extra, train_extra, message, tokenizer_dir, data_dir, tmp_path, capsys):
    data = {"path": str(data_dir), "mixture": {"prose": 0.5, "code": 0.5}, "seq_len": 32, **data_extra}
    cfg = recipe(tokenizer_dir, data_dir, tmp_path / "run", data=data, schedule=SCHEDULE, train={**TRAIN, **train_extra})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("regrow: error: ") and "\n" not in err
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_distill_teacher_of_another_vocabulary(tokenizer_dir, data_dir, family_models, tmp_path, capsys):
    from transformers import AutoConfig, AutoModelForCausalLM

    other = tmp_path / "teacher"
    AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", vocab_size=300, hidden_size=32, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=64)).save_pretrained(other)
    cfg = recipe(tokenizer_dir, data_dir, tmp_path / "run", schedule=SCHEDULE, train={**TRAIN, "distill": {"teacher": str(other)}})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 2
    assert "has 300 output tokens but the student 512" in capsys.readouterr().err
