"""What a scaling law is to regrow: a formula fitted on a table, reported with intervals.

A `Law` turns a table (analysis/table.py) into a `LawFit`: parameters with bootstrap intervals,
goodness of fit, law-specific results (`extras`), warnings, and the curves to draw (observed
points and the fitted line). `CurveLaw` is the common case: one formula, fitted by
analysis/fit.py; a subclass gives its coordinates, bounds, start grid and log prediction.
Adding a law = one file with a `@LAWS.register("name")` class (built-in ones are imported in
laws/__init__.py). What a law is fitted on is declared by the class: its CSV `columns` (and
which may be blank), how it reads run folders (`runs_table`) and a study (`study_table`, through
the `StudyRuns` interface that the study layer implements), its own report lines; `regrow fit`
and the study report read those and never test a law's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from regrow.analysis.fit import CurveFit, fit_curve, goodness, interval
from regrow.analysis.table import Table, rows_where
from regrow.errors import RegrowError
from regrow.registry import Registry

LAWS: Registry[type[Law]] = Registry("law")
register = LAWS.register


@dataclass
class FitOptions:
    bootstrap: int = 100
    seed: int = 0
    delta: float = 1e-3  # Huber delta on log loss (Hoffmann et al.)
    level: float = 0.95
    keep: int = 16  # L-BFGS runs from this many best grid starts
    min_step: int = 1  # annealing / cpt: points before this step are not fitted (the earliest curve is steeper)

    def validate(self) -> None:
        if self.bootstrap < 0:
            raise RegrowError(f"--bootstrap is {self.bootstrap}; it must be >= 0")
        if self.min_step < 1:
            raise RegrowError(f"--min-step is {self.min_step}; it must be >= 1 (step 0 has S1 = 0)")
        if not 0 < self.level < 1:
            raise RegrowError(f"--level is {self.level}; it must be in (0, 1)")


@dataclass
class Curve:
    """One series to draw: observed points and the fitted (or predicted) line."""

    label: str
    x: list[float]
    y: list[float]
    fit_x: list[float] = field(default_factory=list)
    fit_y: list[float] = field(default_factory=list)


POOR_R2 = 0.5


@dataclass
class LawFit:
    law: str
    formula: str
    parameters: dict[str, dict[str, float]]  # name -> value, low, high
    goodness: dict[str, float]
    curves: list[Curve]
    axes: dict[str, str]  # xlabel, ylabel, xscale, yscale
    extras: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    group: str | None = None

    def doubts(self) -> list[str]:
        """Why a reader should not trust this fit: a coordinate on its bound (the `warnings`), or a
        formula that explains less than half the variance of its points."""
        r2 = self.goodness.get("r2", 1.0)
        return [re.sub(r"^[\w.-]+: ", "", w) for w in self.warnings] + (  # without the law's name
            [f"R^2 {r2:.2f}: the formula does not describe these points"] if r2 < POOR_R2 else [])


class StudyRuns(Protocol):
    """A study's finished training runs, as the study layer hands them to a law."""

    new: list[str]  # the domains the laws fit on: the chosen ones, else the study's new domains
    old: list[str]  # the study's old domains
    domains: list[str] | None  # the domains chosen by the user (--domain), if any

    def runs(self) -> list[tuple[Any, Path]]:
        """(name, folder) of each finished run; a name has .role (pruned / scratch / source),
        .start, .start_without_seed, .schedule, .replay, .cell, .dynamic."""

    def curve_rows(self, rows: dict[str, list], run_dir: Path, domains: list[str], **labels) -> None:
        """Append the run's curve (step, lr, loss, D and `labels`) to `rows`."""

    def curves(self, labels: Callable[[Any], dict[str, str] | None]) -> Table:
        """The new-domain curve of every run for which `labels(name)` gives its label columns
        (None: the run is left out), as a table."""

    def eval_points(self, run_dir: Path, domains: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(steps, tokens, mean loss over `domains`) at each evaluation."""

    def base_run(self) -> Path | None:
        """The study's own pre-training run, if it has one."""

    def nonembedding_params(self, run_dir: Path) -> int: ...

    def summary(self, start: str) -> dict | None:
        """The summary.json of a finished run of starting model `start` (its FLOPs per token, ...)."""


class Law:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    formula: ClassVar[str] = ""
    columns: ClassVar[tuple[str, ...]] = ()
    blank: ClassVar[tuple[str, ...]] = ()  # CSV columns that may be blank (an unmeasured step of a curve)
    handles_groups: ClassVar[bool] = False  # True: `fit` reads the `group` column itself
    predicts_schedules: ClassVar[bool] = False  # `regrow fit --predict RUN_OR_RECIPE` (see `prediction`)
    report_rank: ClassVar[int] = 100  # order in the study report (lower first)

    def runs_table(self, curves: Callable[[bool], Table]) -> Table:
        """The table of `regrow fit --runs`: `curves(measured_only)` gives every run's curve
        (columns run, group, step, lr, loss, D). A law that needs controls or phases refuses."""
        raise RegrowError(f"law {self.name!r} needs a study or a CSV (its rows need controls or phases); --runs serves "
                          f"the {', '.join(LAWS.where(lambda law: law.runs_table is not Law.runs_table))} laws")

    def study_table(self, study: StudyRuns) -> Table:
        """The rows this law is fitted on in a study (a RegrowError says why a study cannot serve)."""
        raise RegrowError(f"law {self.name!r} is not fitted on studies")

    def report_lines(self, fits: list[LawFit], study: StudyRuns, out: dict) -> list[str]:
        """Extra markdown lines of this law's report section (and their data in `out`)."""
        return []

    def prediction(self, fit: LawFit, lrs: np.ndarray) -> dict:
        """The curve this fit predicts for a schedule's LRs (laws with `predicts_schedules`)."""
        raise NotImplementedError

    def fit(self, table: Table, options: FitOptions) -> list[LawFit]:
        raise NotImplementedError

    def fit_table(self, table: Table, options: FitOptions) -> list[LawFit]:
        """One fit per value of the optional `group` column."""
        if "group" not in table or self.handles_groups:
            return self.fit(table, options)
        fits = []
        for group in dict.fromkeys(table["group"].tolist()):
            for fit in self.fit(rows_where(table, table["group"] == group), options):
                fit.group = group
                fits.append(fit)
        return fits


class CurveLaw(Law):
    """A single formula y = f(x; theta) fitted with the Huber-on-log objective."""

    coords: ClassVar[tuple[str, ...]] = ()
    bounds: ClassVar[list[tuple[float, float]]] = []

    def grid(self, x: dict[str, np.ndarray], y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def log_predict(self, theta: np.ndarray, x: dict[str, np.ndarray], jacobian: bool = False):
        """theta [S, P], x columns [n] -> (log prediction [S, n], its Jacobian [S, n, P] or None)."""
        raise NotImplementedError

    def values(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Reported parameters from coordinates theta [S, P] (e.g. A = exp(a))."""
        raise NotImplementedError

    def predict(self, theta: np.ndarray, x: dict[str, np.ndarray]) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.exp(self.log_predict(np.asarray(theta, dtype=np.float64)[None], x)[0][0])

    def fit_points(self, x: dict[str, np.ndarray], y: np.ndarray, options: FitOptions) -> CurveFit:
        x = {k: np.asarray(v, dtype=np.float64) for k, v in x.items()}
        return fit_curve(lambda theta, jac: self.log_predict(theta, x, jac), y, self.grid(x, y), self.bounds,
                         options.delta, options.keep, options.bootstrap, options.seed)

    def parameters(self, fit: CurveFit, options: FitOptions) -> dict[str, dict[str, float]]:
        best = self.values(fit.theta[None])
        boot = self.values(fit.boot) if len(fit.boot) else {}
        out = {}
        for name, value in best.items():
            entry = {"value": float(value[0])}
            if name in boot:
                entry["low"], entry["high"] = interval(boot[name], options.level)
            out[name] = entry
        return out

    def bound_warnings(self, fit: CurveFit) -> list[str]:
        """Coordinates that ended on a bound: the data do not determine them."""
        out = []
        for name, value, (lo, hi) in zip(self.coords, fit.theta, self.bounds):
            if min(abs(value - lo), abs(value - hi)) < 1e-6 * max(1.0, abs(value)):
                out.append(f"{self.name}: coordinate {name!r} of the fit sits at its bound ({value:g}); the data do not "
                           "determine it (more points, or points further along the curve, would)")
        return out

    def goodness_of(self, fit: CurveFit, x: dict[str, np.ndarray], y: np.ndarray) -> dict[str, float]:
        return {**goodness(self.predict(fit.theta, x), y), "objective": fit.objective}


def build_law(name: str) -> Law:
    return LAWS[name]()


def log_sum_exp(terms: list[np.ndarray], jacobians: list[list[np.ndarray]] | None):
    """log sum_k exp(t_k) and its Jacobian from each term's d t_k / d theta (terms [S, n])."""
    stacked = np.stack(terms)
    value = np.logaddexp.reduce(stacked, axis=0)
    if jacobians is None:
        return value, None
    weights = np.exp(stacked - value)  # softmax over the terms
    return value, sum(w[..., None] * np.stack(j, axis=-1) for w, j in zip(weights, jacobians))


def log_of_sum(value: np.ndarray, partials: list[np.ndarray] | None, floor: float = 1e-6):
    """log of a prediction (clamped at `floor`, where its gradient is 0) and d log / d theta."""
    clamped = np.maximum(value, floor)
    if partials is None:
        return np.log(clamped), None
    jac = np.stack(partials, axis=-1) / clamped[..., None]
    return np.log(clamped), np.where((value > floor)[..., None], jac, 0.0)


def start_grid(*axes) -> np.ndarray:
    """The Cartesian product of start values, one row per start."""
    mesh = np.meshgrid(*[np.asarray(a, dtype=np.float64) for a in axes], indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)
