"""Scaling-law tables from regrow's own runs: a study folder or a list of run folders.

What each law is fitted on when given runs (the CSV form of each law is in its module):
- `data`: each run's validation loss (mean over the chosen domains) against its tokens;
- `annealing`: each run's eval curve and the LR of every step (its resolved schedule); in a
  study, one fit per starting model and data cell (replay, dynamic loading), across schedules;
- `cpt`: the study's own pre-training run (phase pt) and the unpruned source's continued runs
  (phase cpt), one fit per domain and data cell;
- `transfer`: per cell, the from-scratch control (method scratch) against every warm start;
- `chinchilla`: the from-scratch controls, N = their non-embedding parameters.
Step-0 evaluations carry D = 0 and are dropped where a law needs D > 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from regrow.analysis.laws.annealing import schedule_warnings
from regrow.analysis.laws.transfer import transferred
from regrow.analysis.table import Table
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


def _table(rows: dict[str, list]) -> Table:
    text = ("run", "phase", "method", "group")
    return {k: np.array(v, dtype=str) if k in text else np.array(v, dtype=np.float64) for k, v in rows.items()}


def runs_table(run_dirs: list[str], domains: list[str] | None, group_per_run: bool = False) -> Table:
    """Every run's curve: columns run, step, lr, loss, D (and group = run); domains default to the runs' new ones."""
    rows: dict[str, list] = {k: [] for k in ("run", "step", "lr", "loss", "D")}
    if group_per_run:
        rows["group"] = []
    for path in run_dirs:
        run_dir = Path(path)
        if not (run_dir / "metrics.jsonl").is_file() or not (run_dir / "config.yaml").is_file():
            raise RegrowError(f"--runs {path!r} is not a finished regrow run folder (no metrics.jsonl / config.yaml)")
        chosen = domains or new_domains_of_run(run_dir)
        _curve_rows(rows, run_dir, chosen, run=run_dir.name, **({"group": run_dir.name} if group_per_run else {}))
    return _table(rows)


def measured_runs_table(run_dirs: list[str], domains: list[str] | None) -> Table:
    """runs_table without unmeasured steps and step 0: the data law's rows."""
    return _measured_only(runs_table(run_dirs, domains, group_per_run=True), keep_start=False)


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


def study_table(law: str, study_dir: str | Path, domains: list[str] | None = None) -> Table:
    """The rows `law` is fitted on, from a study's finished runs (see the module docstring)."""
    study_dir = Path(study_dir)
    runs = finished_runs(study_dir)
    study = read_yaml(study_dir / STUDY_FILE)
    new = domains or list(study["data"]["new"])
    rows: dict[str, list] = {k: [] for k in ("run", "group", "step", "lr", "loss", "D")}
    if law == "data":
        for name, run_dir, _ in runs:
            _curve_rows(rows, run_dir, new, run=name.start, group=f"{name.start} {name.schedule} {name.replay}")
    elif law == "annealing":
        for name, run_dir, _ in runs:
            _curve_rows(rows, run_dir, new, run=f"{name.schedule}",
                        group=f"{name.start} {name.replay}{name.schedule.partition('.')[2] and ' dynamic'}")
    elif law == "transfer":
        rows["method"] = []
        for name, run_dir, _ in runs:
            if name.role == "source":
                continue
            method = "scratch" if name.role == "scratch" else name.start_without_seed
            _curve_rows(rows, run_dir, new, run=name.start, method=method, group=" ".join(name.cell))
    elif law == "cpt":
        return _cpt_table(study, study_dir, runs, domains)
    elif law == "chinchilla":
        return _chinchilla_table(runs, new)
    else:
        raise RegrowError(f"unknown law {law!r}")
    table = _table(rows)
    return _measured_only(table, keep_start=law == "transfer") if law in ("data", "transfer") else table


def _measured_only(table: Table, keep_start: bool) -> Table:
    """Drop the unmeasured steps, and step 0 (D = 0) unless asked (transfer prices the start too)."""
    keep = ~np.isnan(table["loss"]) & ((table["D"] > 0) | keep_start)
    return {k: v[keep] for k, v in table.items()}


def _cpt_table(study: dict, study_dir: Path, runs, domains: list[str] | None) -> Table:
    base = study_dir / "runs" / "base"
    if not (base / "metrics.jsonl").is_file():
        raise RegrowError("law 'cpt' on a study needs the study's own pre-training run (source.pretrain), whose curve "
                          "is the pt phase; this study starts from a given model: use --csv")
    sources = [(n, d) for n, d, _ in runs if n.role == "source"]
    if not sources:
        raise RegrowError("law 'cpt' needs finished runs of the unpruned source (controls.source: true)")
    rows: dict[str, list] = {k: [] for k in ("run", "phase", "group", "step", "lr", "loss", "D")}
    for domain in domains or [*study["data"]["old"], *study["data"]["new"]]:
        for name, run_dir in sources:
            group = f"{domain} {name.replay}{name.schedule.partition('.')[2] and ' dynamic'}"
            if group not in rows["group"]:
                _curve_rows(rows, base, [domain], run="base", phase="pt", group=group)
            _curve_rows(rows, run_dir, [domain], run=name.schedule, phase="cpt", group=group)
    return _table(rows)


def _chinchilla_table(runs, new: list[str]) -> Table:
    rows: dict[str, list] = {"N": [], "D": [], "loss": []}
    for name, run_dir, _ in runs:
        if name.role != "scratch":
            continue
        n = shape_of_folder(run_dir / "model").nonembedding_params
        steps, tokens, losses = eval_points(run_dir, new)
        for d, loss in zip(tokens, losses):
            if d > 0:
                rows["N"].append(n)
                rows["D"].append(d)
                rows["loss"].append(loss)
    if not rows["N"]:
        raise RegrowError("law 'chinchilla' on a study uses its from-scratch controls; this study has none finished")
    return _table(rows)


def annealing_prediction(fit, lrs: np.ndarray) -> dict:
    """Predicted curve of a schedule (and the power law in steps beside it), with the law's warnings."""
    from regrow.analysis.laws.annealing import power_law_in_steps, predict_curve

    values = {k: v["value"] for k, v in fit.parameters.items()}
    steps = np.arange(1, len(lrs) + 1)
    curve = predict_curve(values, lrs)
    baseline = power_law_in_steps(fit.extras, steps)
    return {"steps": len(lrs), "final_loss": float(curve[-1]), "power_law_final_loss": float(baseline[-1]),
            "curve": curve.tolist(), "warnings": schedule_warnings(lrs, fit.extras["fitted_peak_lr"])}


def predicted_savings(fit, flops_per_token: float, pruning_flops: float, budgets: list[float]) -> list[dict]:
    """Compute-saving factor a transfer fit predicts at larger continued-training budgets D_F.

    A warm start after D_F tokens matches from-scratch training on D_F + D_T(D_F) tokens, so
    saving = flops_per_token (D_F + D_T) / (pruning FLOPs + flops_per_token D_F).
    """
    out = []
    for d_f in budgets:
        d_t = transferred(fit.parameters, d_f)
        out.append({"D_F": d_f, "D_T": d_t,
                    "saving": flops_per_token * (d_f + d_t) / (pruning_flops + flops_per_token * d_f)})
    return out
