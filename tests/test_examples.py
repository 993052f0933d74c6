"""Every recipe in examples/ is a valid recipe (keys, types, schedule)."""

from pathlib import Path

import pytest
import yaml

from regrow.config import from_dict, load_config
from regrow.schedules import build_schedule
from regrow.train.config import RunConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RECIPES = sorted(p for p in EXAMPLES.rglob("*.yaml") if "schedule" in yaml.safe_load(p.read_text()))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_recipe_is_valid(path):
    cfg = load_config(RunConfig, path)  # validated at load
    schedule = cfg.resolved_schedule()
    assert schedule(cfg.train.steps) >= schedule.lr_min
    # resolved against the recipe: its own total_steps, else train.steps
    assert schedule.total == (cfg.schedule.total_steps or cfg.train.steps)
    if schedule.warmup_steps:  # linear warmup: lr_max / warmup_steps at the first update
        assert schedule(1) == pytest.approx(schedule.lr_max / schedule.warmup_steps)
    lrs = [schedule(s) for s in range(1, cfg.train.steps + 1)]
    assert max(lrs) <= schedule.lr_max * (1 + 1e-12) and min(lrs) > 0
    if schedule.name in ("cosine", "wsd") and cfg.train.steps >= schedule.total:  # a decay ends at lr_min
        assert schedule(schedule.total) == pytest.approx(schedule.lr_min)


def test_schedule_file_is_valid():
    schedule = build_schedule(yaml.safe_load((EXAMPLES / "schedules.yaml").read_text()))
    assert schedule.name == "wsd"


def test_examples_exist():
    assert len(RECIPES) >= 5


PRUNE_CONFIGS = sorted((EXAMPLES / "prune").glob("*.yaml"))


@pytest.mark.parametrize("path", [p for p in PRUNE_CONFIGS if "method" in yaml.safe_load(p.read_text())],
                         ids=lambda p: p.name)
def test_example_prune_config_is_valid(path):
    from regrow.compress.config import PruneConfig
    from regrow.compress.prune import check_config
    from regrow.compress.shape import SHAPE_KEYS

    cfg = load_config(PruneConfig, path)
    check_config(cfg)
    target = yaml.safe_load((EXAMPLES.parent / cfg.target).read_text())
    assert set(target) <= set(SHAPE_KEYS)


def test_example_study_is_valid():
    from regrow.compress.methods import METHODS
    from regrow.compress.reinit import REINITS
    from regrow.study.config import StudyConfig
    from regrow.study.plan import make_plan

    cfg = load_config(StudyConfig, EXAMPLES / "en_de" / "study.yaml")
    cfg.validate(list(METHODS), list(REINITS))
    jobs = make_plan(cfg)
    assert sum(j.kind == "train" for j in jobs) == 5 * 2 * 2 and jobs[0].key == "base"


def test_example_sparse_vs_structured_study_is_valid():
    """Structured and sparse methods in one grid: every pruning run's config is valid."""
    from regrow.compress.config import PruneConfig
    from regrow.compress.methods import METHODS
    from regrow.compress.prune import check_config
    from regrow.compress.reinit import REINITS
    from regrow.study.config import StudyConfig
    from regrow.study.plan import make_plan
    from regrow.study.runner import check_targets

    cfg = load_config(StudyConfig, EXAMPLES / "en_de" / "sparse_vs_structured.yaml")
    cfg.validate(list(METHODS), list(REINITS))
    jobs = [job for job in make_plan(cfg) if job.kind == "prune"]
    kinds = {METHODS[job.config["method"]].sparse for job in jobs}
    assert kinds == {True, False}
    for job in jobs:
        check_config(from_dict(PruneConfig, job.config))
    cfg.source.pretrain["config"]["vocab_size"] = 8192  # the tokenizer README.md trains (not built here)
    check_targets(cfg)  # the grid's ratio is reachable by the sparse methods on this source
