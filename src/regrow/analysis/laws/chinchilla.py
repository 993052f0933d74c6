"""L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, approach 3; docs/ALGORITHMS.md §7).

Fitted in log space as LSE(a - alpha log N, b - beta log D, e) against log L, Huber delta 1e-3,
L-BFGS from the paper's grid of starts. Also reports the compute-optimal allocation it implies
under C = 6 N D: N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = (C/6)^(alpha/(alpha+beta)) / G,
G = (alpha A / (beta B))^(1/(alpha+beta)).
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
    table_from_rows,
)
from regrow.errors import RegrowError


def compute_optimal(values: dict[str, float], compute: float) -> dict[str, float]:
    alpha, beta, A, B = values["alpha"], values["beta"], values["A"], values["B"]
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
    n_opt = G * (compute / 6) ** (beta / (alpha + beta))
    d_opt = (compute / 6) ** (alpha / (alpha + beta)) / G
    return {"compute": compute, "N_opt": n_opt, "D_opt": d_opt, "tokens_per_parameter": d_opt / n_opt}


@register("chinchilla")
class Chinchilla(CurveLaw):
    summary = "loss against parameters and tokens (Hoffmann et al.); compute-optimal N, D"
    formula = "L(N, D) = E + A / N^alpha + B / D^beta"
    columns = ("N", "D", "loss")
    report_rank = 5

    def study_table(self, study):
        """The from-scratch controls: N = their non-embedding parameters, D = tokens at each evaluation."""
        rows: dict[str, list] = {"N": [], "D": [], "loss": []}
        for name, run_dir in study.runs():
            if name.role != "scratch":
                continue
            n = study.nonembedding_params(run_dir)
            _, tokens, losses = study.eval_points(run_dir, study.new)
            for d, loss in zip(tokens, losses):
                if d > 0:
                    rows["N"].append(n)
                    rows["D"].append(d)
                    rows["loss"].append(loss)
        if not rows["N"]:
            raise RegrowError("law 'chinchilla' on a study uses its from-scratch controls; this study has none finished")
        return table_from_rows(rows)
    coords = ("a", "b", "e", "alpha", "beta")
    bounds = [(-20.0, 80.0), (-20.0, 80.0), (-10.0, 5.0), (0.0, 5.0), (0.0, 5.0)]

    def grid(self, x, y):
        return start_grid(np.arange(0, 26, 5), np.arange(0, 26, 5), np.arange(-1, 1.01, 0.5),
                          np.arange(0, 2.01, 0.5), np.arange(0, 2.01, 0.5))

    def log_predict(self, theta, x, jacobian=False):
        a, b, e, alpha, beta = (theta[:, i : i + 1] for i in range(5))
        t1, t2 = a - alpha * x["logN"], b - beta * x["logD"]
        t3 = np.broadcast_to(e, t1.shape)
        if not jacobian:
            return log_sum_exp([t1, t2, t3], None)
        one, zero = np.ones_like(t1), np.zeros_like(t1)
        return log_sum_exp([t1, t2, t3], [[one, zero, zero, -x["logN"] * one, zero],
                                          [zero, one, zero, zero, -x["logD"] * one],
                                          [zero, zero, one, zero, zero]])

    def values(self, theta):
        return {"E": np.exp(theta[:, 2]), "A": np.exp(theta[:, 0]), "alpha": theta[:, 3],
                "B": np.exp(theta[:, 1]), "beta": theta[:, 4]}

    def fit(self, table: Table, options: FitOptions) -> list[LawFit]:
        check_table(table, self.columns, self.name)
        n, d, y = table["N"], table["D"], table["loss"]
        check_points(len(y), len(self.coords), self.name)
        if len(np.unique(n)) < 2 or len(np.unique(d)) < 2:
            raise RegrowError(f"law 'chinchilla' needs at least 2 distinct N and 2 distinct D; the data has "
                              f"{len(np.unique(n))} N value(s) and {len(np.unique(d))} D value(s)")
        x = {"logN": np.log(n), "logD": np.log(d)}
        fit = self.fit_points(x, y, options)
        params = self.parameters(fit, options)
        best = {k: v["value"] for k, v in params.items()}
        largest = float((6 * n * d).max())
        optimal = [compute_optimal(best, c) for c in (largest, 10 * largest, 100 * largest)]
        curves = []
        grid_d = np.geomspace(d.min(), d.max() * 10, 60)
        for size in np.unique(n):
            mask = n == size
            curves.append(Curve(f"N={size:.3g}", d[mask].tolist(), y[mask].tolist(), grid_d.tolist(),
                                self.predict(fit.theta, {"logN": np.full_like(grid_d, np.log(size)),
                                                         "logD": np.log(grid_d)}).tolist()))
        return [LawFit(self.name, self.formula, params, self.goodness_of(fit, x, y), curves,
                       {"xlabel": "D (tokens)", "ylabel": "loss", "xscale": "log", "yscale": "linear"},
                       {"compute_optimal": optimal}, self.bound_warnings(fit))]
