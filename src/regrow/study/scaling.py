"""Scaling-law tables from regrow's own runs: a study folder or a list of run folders.

Each law says what it is fitted on (`Law.study_table`, `Law.runs_table` in its own module);
this module hands it the runs: curves (step, LR of every step, loss at each evaluation, tokens
D) read from metrics.jsonl and each run's resolved schedule. Step-0 evaluations carry D = 0 and
are dropped where a law needs D > 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regrow.analysis.laws import LAWS
from regrow.analysis.table import Table, curve_columns, measured_only, table_from_rows
from regrow.config import from_dict, read_yaml
from regrow.errors import RegrowError
from regrow.models.flops import shape_of_folder
from regrow.schedules import Schedule, build_schedule
from regrow.study.plan import RunName
from regrow.study.runner import STUDY_FILE, study_status
from regrow.train.config import RunConfig
from regrow.train.metrics import read_metrics
from regrow.train.summary import new_domains_of


def eval_points(run_dir: Path, domains: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, tokens, mean loss over `domains`) at every evaluation of a run."""
    rows = [r for r in read_metrics(run_dir) if r["event"] == "eval"]
    missing = [d for d in domains if rows and f"eval/{d}/loss" not in rows[0]]
    if missing:
        raise RegrowError(f"run {str(run_dir)!r} was not evaluated on {', '.join(missing)}")
    return (np.array([r["step"] for r in rows]), np.array([r["tokens"] for r in rows], dtype=np.float64),
            np.array([np.mean([r[f"eval/{d}/loss"] for d in domains]) for r in rows]))


def learning_rates(schedule: Schedule, steps: int) -> np.ndarray:
    return np.array([schedule(s) for s in range(1, steps + 1)])


def run_learning_rates(run_dir: Path) -> np.ndarray:
    """The LR of every step 1..T of a finished run, from its resolved config."""
    config = read_yaml(run_dir / "config.yaml")
    steps = int(config["train"]["steps"])
    return learning_rates(build_schedule(config["resolved"]["schedule"], steps), steps)


def recipe_learning_rates(recipe: str | Path) -> np.ndarray:
    """The LR of every step of a recipe (`regrow train` YAML) that has not run: only its
    schedule and train.steps are needed, so the rest of the recipe is not validated."""
    cfg = from_dict(RunConfig, read_yaml(recipe))
    return learning_rates(cfg.resolved_schedule(), cfg.train.steps)


def _curve_rows(rows: dict[str, list], run_dir: Path, domains: list[str], **labels) -> None:
    steps, tokens, losses = eval_points(run_dir, domains)
    lrs = run_learning_rates(run_dir)
    measured = dict(zip(steps.tolist(), losses.tolist()))
    for step in range(0, len(lrs) + 1):
        if step == 0 and 0 not in measured:
            continue
        rows["step"].append(step)
        rows["lr"].append(lrs[step - 1] if step else 0.0)
        rows["loss"].append(measured.get(step, np.nan))
        rows["D"].append(step * (tokens[-1] / steps[-1]) if steps[-1] else 0.0)
        for key, value in labels.items():
            rows[key].append(value)


def runs_table(law: str, run_dirs: list[str], domains: list[str] | None) -> Table:
    """The rows `law` is fitted on from run folders (`regrow fit --runs`): the law takes every
    curve (columns run, step, lr, loss, D) or only the measured points, one group per run."""

    def curves(measured: bool) -> Table:
        rows = curve_columns("run", *(("group",) if measured else ()))
        for path in run_dirs:
            run_dir = Path(path)
            if not (run_dir / "metrics.jsonl").is_file() or not (run_dir / "config.yaml").is_file():
                raise RegrowError(f"--runs {path!r} is not a finished regrow run folder (no metrics.jsonl / config.yaml)")
            chosen = domains or new_domains_of_run(run_dir)
            _curve_rows(rows, run_dir, chosen, run=run_dir.name, **({"group": run_dir.name} if measured else {}))
        table = table_from_rows(rows)
        return measured_only(table, keep_start=False) if measured else table

    return LAWS[law]().runs_table(curves)


def new_domains_of_run(run_dir: Path) -> list[str]:
    """The domains the run's summary calls new (configured, else the most-weighted)."""
    data = read_yaml(run_dir / "config.yaml")["data"]
    return new_domains_of(data["mixture"], data.get("new_domains"))


def finished_runs(study_dir: Path) -> list[tuple[RunName, Path, dict]]:
    _, rows = study_status(study_dir)
    runs = [(RunName.parse(r["key"]), Path(r["result"]["out_dir"]), r["result"]) for r in rows
            if r["kind"] == "train" and r["status"] == "done"]
    if not runs:
        raise RegrowError(f"study {str(study_dir)!r} has no finished training run; run `regrow study` first")
    return runs


class StudyRunSet:
    """A study folder's finished training runs, as laws read them (analysis.laws.base.StudyRuns)."""

    def __init__(self, study_dir: Path, domains: list[str] | None):
        self.study_dir = study_dir
        self.finished = finished_runs(study_dir)
        study = read_yaml(study_dir / STUDY_FILE)
        self.domains = domains
        self.new = domains or list(study["data"]["new"])
        self.old = list(study["data"]["old"])

    def runs(self) -> list[tuple[RunName, Path]]:
        return [(name, run_dir) for name, run_dir, _ in self.finished]

    def curve_rows(self, rows: dict[str, list], run_dir: Path, domains: list[str], **labels) -> None:
        _curve_rows(rows, run_dir, domains, **labels)

    def curves(self, labels) -> Table:
        rows = None
        for name, run_dir in self.runs():
            columns = labels(name)
            if columns is not None:
                rows = rows or curve_columns(*columns)
                _curve_rows(rows, run_dir, self.new, **columns)
        if rows is None:
            raise RegrowError("no finished run of the study serves this law")
        return table_from_rows(rows)

    def eval_points(self, run_dir: Path, domains: list[str]):
        return eval_points(run_dir, domains)

    def base_run(self) -> Path | None:
        base = self.study_dir / "runs" / "base"
        return base if (base / "metrics.jsonl").is_file() else None

    def nonembedding_params(self, run_dir: Path) -> int:
        return shape_of_folder(run_dir / "model").nonembedding_params

    def summary(self, start: str) -> dict | None:
        return next((s for name, _, s in self.finished if name.start_without_seed == start), None)


def study_table(law: str, study_dir: str | Path, domains: list[str] | None = None) -> Table:
    """The rows `law` is fitted on, from a study's finished runs (the law says which)."""
    return LAWS[law]().study_table(StudyRunSet(Path(study_dir), domains))
