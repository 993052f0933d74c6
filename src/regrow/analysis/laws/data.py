"""L(D) = E + B / D^beta: one model size's loss against its training tokens (docs/ALGORITHMS.md §7).

Fitted like the Chinchilla form without the size term; one fit per `group` when the table has
that column (e.g. each compression method's continued-training curve).
"""

from __future__ import annotations

import numpy as np

from regrow.analysis.laws.base import (
    Curve,
    CurveLaw,
    FitOptions,
    LawFit,
    log_sum_exp,
    register,
    start_grid,
)
from regrow.analysis.table import (
    Table,
    check_points,
    check_table,
    measured_only,
    rows_where,
)


@register("data")
class DataLaw(CurveLaw):
    summary = "loss against tokens, per run (Kaplan/Hoffmann data term)"
    formula = "L(D) = E + B / D^beta"
    columns = ("D", "loss")
    handles_groups = True
    report_rank = 2

    def runs_table(self, curves):
        return curves(True)

    def study_table(self, study):
        """Every run's new-domain loss against its tokens, one curve per run."""
        table = study.curves(lambda name: {"run": name.start, "group": f"{name.start} {name.schedule} {name.replay}"})
        return measured_only(table, keep_start=False)
    coords = ("b", "e", "beta")
    bounds = [(-20.0, 80.0), (-10.0, 5.0), (0.0, 5.0)]

    def grid(self, x, y):
        return start_grid(np.arange(0, 26, 2.5), np.log(np.asarray([0.25, 0.5, 0.75, 0.9, 0.98]) * y.min()),
                          [0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0])

    def log_predict(self, theta, x, jacobian=False):
        b, e, beta = (theta[:, i : i + 1] for i in range(3))
        t1 = b - beta * x["logD"]
        t2 = np.broadcast_to(e, t1.shape)
        if not jacobian:
            return log_sum_exp([t1, t2], None)
        one, zero = np.ones_like(t1), np.zeros_like(t1)
        return log_sum_exp([t1, t2], [[one, zero, -x["logD"] * one], [zero, one, zero]])

    def values(self, theta):
        return {"E": np.exp(theta[:, 1]), "B": np.exp(theta[:, 0]), "beta": theta[:, 2]}

    def fit_one(self, d: np.ndarray, y: np.ndarray, options: FitOptions, group: str | None = None) -> LawFit:
        check_points(len(y), len(self.coords), self.name, f"points{f' in group {group!r}' if group else ''}")
        x = {"logD": np.log(d)}
        fit = self.fit_points(x, y, options)
        grid_d = np.geomspace(d.min(), d.max() * 10, 60)
        curve = Curve(group or "data", d.tolist(), y.tolist(), grid_d.tolist(),
                      self.predict(fit.theta, {"logD": np.log(grid_d)}).tolist())
        return LawFit(self.name, self.formula, self.parameters(fit, options), self.goodness_of(fit, x, y), [curve],
                      {"xlabel": "D (tokens)", "ylabel": "loss", "xscale": "log", "yscale": "linear"},
                      warnings=self.bound_warnings(fit), group=group)

    def fit(self, table: Table, options: FitOptions) -> list[LawFit]:
        check_table(table, self.columns, self.name)
        if "group" not in table:
            return [self.fit_one(table["D"], table["loss"], options)]
        fits = []
        for group in dict.fromkeys(table["group"].tolist()):
            rows = rows_where(table, table["group"] == group)
            fits.append(self.fit_one(rows["D"], rows["loss"], options, group))
        return fits

    def inverse(self, values: dict[str, float], loss: np.ndarray) -> np.ndarray:
        """Tokens at which the fitted curve reaches `loss` (inf where loss <= E)."""
        gap = np.asarray(loss, dtype=np.float64) - values["E"]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inf: never reached
            return np.where(gap > 0, (values["B"] / np.maximum(gap, 1e-300)) ** (1 / values["beta"]), np.inf)
