"""The loss curve under any LR schedule (Tissue et al. 2024; docs/ALGORITHMS.md §7).

L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s), S1(s) = sum_{i<=s} eta_i (forward area),
S2(s) = sum_{i<=s} m_i, m_i = lambda * m_{i-1} + (eta_{i-1} - eta_i) (annealing area).

Decisions: warmup steps (the strictly rising start of a schedule) count in S1 and not in S2 (m
starts at the peak, so the warmup's rise is not "negative annealing"); later rises (a re-warm
inside one schedule) do count, negatively. Points at step 0 have S1 = 0 and are not fitted.

Known failure modes (the law is monotone in both areas): appending steps at LR 0 keeps
lowering the prediction (m decays but S2 keeps growing), and scaling the whole schedule up
keeps lowering it (S1 grows; instability is invisible). `predict` warns for both.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from regrow.analysis.laws.base import (
    Curve,
    CurveLaw,
    FitOptions,
    LawFit,
    log_of_sum,
    register,
    start_grid,
)
from regrow.analysis.laws.data import DataLaw
from regrow.analysis.table import (
    Table,
    check_points,
    check_table,
    rows_where,
)
from regrow.errors import RegrowError

DECAY = 0.999  # lambda


def warmup_length(lrs: np.ndarray) -> int:
    """Number of leading steps up to the peak of the initial strictly rising segment."""
    rising = np.diff(lrs) > 0
    return int(np.argmin(rising)) if not rising.all() else len(lrs) - 1


def lr_areas(lrs: np.ndarray, decay: float = DECAY) -> tuple[np.ndarray, np.ndarray]:
    """S1 and S2 after each step 1..T (index s - 1) of a schedule given as its T learning rates."""
    lrs = np.asarray(lrs, dtype=np.float64)
    drops = np.concatenate([[0.0], lrs[:-1] - lrs[1:]])
    drops[: warmup_length(lrs) + 1] = 0.0
    momentum = lfilter([1.0], [1.0, -decay], drops)
    return np.cumsum(lrs), np.cumsum(momentum)


def schedule_runs(table: Table, law: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """run -> (learning rates of steps 1..T, measured steps, measured losses)."""
    runs = {}
    for run in dict.fromkeys(table["run"].tolist()):
        rows = rows_where(table, table["run"] == run)
        order = np.argsort(rows["step"], kind="stable")
        steps, lrs, losses = rows["step"][order], rows["lr"][order], rows["loss"][order]
        trained = steps >= 1
        expected = np.arange(1, int(steps.max()) + 1) if trained.any() else np.zeros(0)
        if not np.array_equal(steps[trained], expected):
            missing = sorted(set(expected.tolist()) - set(steps[trained].tolist()))
            what = f"step {int(missing[0])} is missing" if missing else "a step appears twice"
            raise RegrowError(f"law {law!r}: run {run!r} needs one row with its lr at every step 1..T; {what}")
        if (lrs[trained] < 0).any() or np.isnan(lrs[trained]).any():
            raise RegrowError(f"law {law!r}: run {run!r} has a negative or missing lr")
        measured = ~np.isnan(losses)
        runs[run] = (lrs[trained], steps[measured].astype(int), losses[measured])
    return runs


def predict_curve(values: dict[str, float], lrs: np.ndarray, decay: float = DECAY) -> np.ndarray:
    """Predicted loss after each step 1..T of a schedule."""
    s1, s2 = lr_areas(lrs, decay)
    return values["L0"] + values["A"] * s1 ** (-values["alpha"]) - values["C"] * s2


def schedule_warnings(lrs: np.ndarray, fitted_peak: float) -> list[str]:
    """The two schedule shapes on which the law is known to be wrong (docs/ALGORITHMS.md §7)."""
    lrs = np.asarray(lrs, dtype=np.float64)
    warnings = []
    started = np.flatnonzero(lrs > 0)
    zero_steps = int((lrs[started[0]:] <= 0).sum()) if len(started) else len(lrs)
    if zero_steps:
        warnings.append(f"the schedule has {zero_steps} step(s) at LR 0 after training started; the annealing law keeps "
                        "lowering its prediction over them although the weights cannot change: do not trust it there")
    if lrs.max() > fitted_peak * (1 + 1e-9):
        warnings.append(f"the schedule's peak LR {lrs.max():.3g} is above the largest peak of the fitted runs "
                        f"({fitted_peak:.3g}); the law predicts lower loss for any larger LR and cannot see instability")
    return warnings


@register("annealing")
class AnnealingLaw(CurveLaw):
    summary = "loss curve from the LR schedule: forward area and annealing area (Tissue et al.)"
    formula = "L(s) = L0 + A * S1^(-alpha) - C * S2"
    columns = ("run", "step", "lr", "loss")
    blank = ("loss",)
    predicts_schedules = True
    report_rank = 3

    def runs_table(self, curves):
        return curves(False)

    def study_table(self, study):
        """Per starting model and data cell (replay, dynamic loading), the curves of its schedules."""
        return study.curves(lambda name: {"run": name.schedule,
                                          "group": f"{name.start} {name.replay}{' dynamic' if name.dynamic else ''}"})

    def prediction(self, fit, lrs):
        """Predicted curve of a schedule (and the power law in steps beside it), with the law's warnings."""
        values = {k: v["value"] for k, v in fit.parameters.items()}
        steps = np.arange(1, len(lrs) + 1)
        curve = predict_curve(values, lrs)
        baseline = power_law_in_steps(fit.extras, steps)
        return {"steps": len(lrs), "final_loss": float(curve[-1]), "power_law_final_loss": float(baseline[-1]),
                "curve": curve.tolist(), "warnings": schedule_warnings(lrs, fit.extras["fitted_peak_lr"])}
    coords = ("l0", "a", "alpha", "c")
    bounds = [(-10.0, 5.0), (-20.0, 20.0), (0.0, 5.0), (-30.0, 20.0)]

    def grid(self, x, y):
        return start_grid(np.log(np.array([0.3, 0.5, 0.7, 0.9]) * y.min()), np.log(np.geomspace(1e-2, 1e2, 9)),
                          [0.1, 0.3, 0.5, 0.8, 1.2], np.log(np.geomspace(1e-3, 1e4, 8)))

    def log_predict(self, theta, x, jacobian=False):
        l0, a, alpha, c = (theta[:, i : i + 1] for i in range(4))
        floor = np.exp(l0) * np.ones_like(x["S1"])
        power = np.exp(a) * x["S1"] ** (-alpha)
        anneal = np.exp(c) * x["S2"]
        partials = [floor, power, -power * np.log(x["S1"]), -anneal] if jacobian else None
        return log_of_sum(floor + power - anneal, partials)

    def values(self, theta):
        return {"L0": np.exp(theta[:, 0]), "A": np.exp(theta[:, 1]), "alpha": theta[:, 2], "C": np.exp(theta[:, 3])}

    def fit(self, table: Table, options: FitOptions) -> list[LawFit]:
        check_table(table, self.columns, self.name, positive=("loss",))
        runs = schedule_runs(table, self.name)
        s1, s2, steps, y, run_of = [], [], [], [], []
        for run, (lrs, measured_steps, losses) in runs.items():
            area1, area2 = lr_areas(lrs)
            keep = measured_steps >= options.min_step
            idx = measured_steps[keep] - 1
            s1.append(area1[idx])
            s2.append(area2[idx])
            steps.append(measured_steps[keep])
            y.append(losses[keep])
            run_of += [run] * int(keep.sum())
        x = {"S1": np.concatenate(s1), "S2": np.concatenate(s2)}
        y, steps, run_of = np.concatenate(y), np.concatenate(steps), np.array(run_of)
        check_points(len(y), len(self.coords), self.name, "measured points after step 0")
        fit = self.fit_points(x, y, options)
        params = self.parameters(fit, options)
        best = {k: v["value"] for k, v in params.items()}
        baseline = DataLaw().fit_one(steps.astype(np.float64), y, FitOptions(bootstrap=0, seed=options.seed))
        curves = [Curve(run, steps[run_of == run].tolist(), y[run_of == run].tolist(),
                        np.arange(1, len(lrs) + 1).tolist(), predict_curve(best, lrs).tolist())
                  for run, (lrs, _, _) in runs.items()]
        extras = {"lambda": DECAY, "warmup": "counted in S1, not in S2",
                  "fitted_peak_lr": float(max(lrs.max() for lrs, _, _ in runs.values())),
                  "power_law_in_steps": {k: v["value"] for k, v in baseline.parameters.items()},
                  "power_law_in_steps_goodness": baseline.goodness}
        return [LawFit(self.name, self.formula, params, self.goodness_of(fit, x, y), curves,
                       {"xlabel": "step", "ylabel": "loss", "xscale": "linear", "yscale": "linear"}, extras, self.bound_warnings(fit))]


def power_law_in_steps(extras: dict, steps: np.ndarray) -> np.ndarray:
    """The baseline fitted beside the law: L = E + B / s^beta on the same points."""
    p = extras["power_law_in_steps"]
    return p["E"] + p["B"] / np.asarray(steps, dtype=np.float64) ** p["beta"]
