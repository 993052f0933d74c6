"""Effective data transferred by a warm start (Hernandez et al. 2021; docs/ALGORITHMS.md §7).

The from-scratch control's curve (rows with method `scratch`) is fitted with the data law
L(D) = E + B / D^beta. A warm start (a compressed model, any other method) that reaches loss L
after D_F continued-training tokens is worth D_E = L_scratch^-1(L) from-scratch tokens, so it
transferred D_T = D_E - D_F. Per method, D_T = k * D_F^alpha (* N^beta when the table has
several model sizes N) is fitted on log D_T. Points whose loss lies below the scratch curve's
asymptote E cannot be priced (skipped, counted); points with D_T <= 0 mean no transfer at that
D_F (skipped, counted); D_E beyond the control's last token count is an extrapolation (counted).
"""

from __future__ import annotations

import numpy as np

from regrow.analysis.laws.base import Curve, CurveLaw, FitOptions, Law, LawFit, register, start_grid
from regrow.analysis.laws.data import DataLaw
from regrow.analysis.table import (
    Table,
    check_points,
    check_table,
    measured_only,
    rows_where,
)
from regrow.errors import RegrowError

BUDGET_MULTIPLES = (1, 10, 100)


class TransferPower(CurveLaw):
    """D_T = k D_F^alpha (N^beta with several sizes), fitted on log D_T."""

    name = "transfer-power"

    def __init__(self, with_size: bool):
        self.with_size = with_size
        self.coords = ("logk", "alpha", "beta") if with_size else ("logk", "alpha")
        self.bounds = [(-50.0, 80.0), (-3.0, 3.0), (-3.0, 3.0)][: len(self.coords)]

    def grid(self, x, y):
        axes = [np.linspace(-10, 30, 9), [0.0, 0.25, 0.5, 0.75, 1.0, 1.5]] + ([[0.0, 0.5, 1.0]] if self.with_size else [])
        return start_grid(*axes)

    def log_predict(self, theta, x, jacobian=False):
        value = theta[:, 0:1] + theta[:, 1:2] * x["logDF"]
        columns = [np.ones_like(x["logDF"]), x["logDF"]]
        if self.with_size:
            value = value + theta[:, 2:3] * x["logN"]
            columns.append(x["logN"])
        jac = np.broadcast_to(np.stack(columns, axis=-1), (*value.shape, len(columns))) if jacobian else None
        return value, jac

    def values(self, theta):
        out = {"k": np.exp(theta[:, 0]), "alpha": theta[:, 1]}
        if self.with_size:
            out["beta"] = theta[:, 2]
        return out


@register("transfer")
class TransferLaw(Law):
    """Two stages: the scratch control through the data law, then a TransferPower fit per method."""

    summary = "effective data transferred by a warm start against the from-scratch control (Hernandez et al.)"
    formula = "D_T = k * D_F^alpha [* N^beta], D_T = L_scratch^-1(L_warm(D_F)) - D_F"
    columns = ("method", "D", "loss")
    handles_groups = True
    report_rank = 1

    def study_table(self, study):
        """Per cell, the from-scratch control (method scratch) and every warm start (step 0 kept:
        the start is priced too)."""
        table = study.curves(lambda name: None if name.role == "source" else {
            "run": name.start, "method": "scratch" if name.role == "scratch" else name.start_without_seed,
            "group": " ".join(name.cell)})
        return measured_only(table, keep_start=True)

    def report_lines(self, fits, study, out):
        """Predicted compute-saving factors at larger budgets, from each method's fit."""
        lines = ["Predicted compute-saving factor at larger continued-training budgets D_F (from the transfer fits; "
                 "pruning FLOPs included; an extrapolation of the fitted power law): the FLOPs from-scratch training "
                 "needs to match the loss the warm start reaches after D_F tokens, over the warm start's FLOPs. This "
                 "targets the warm start's own loss, unlike the ranking's saving (which targets the control's final "
                 "loss).", "",
                 "| method [cell] | " + " | ".join(f"{m}x budget" for m in BUDGET_MULTIPLES) + " |",
                 "|---|" + "---|" * len(BUDGET_MULTIPLES)]
        predictions = {}
        for fit in fits:
            budget = max(fit.curves[0].x)
            summary = study.summary(fit.group.split(" in group")[0])
            if summary is None:
                continue
            rows = predicted_savings(fit, summary["flops_per_token"], summary["compute"]["flops"]["pruning"],
                                     [budget * m for m in BUDGET_MULTIPLES])
            predictions[fit.group] = rows
            caution = " (caution: see above)" if fit.doubts() else ""
            lines.append(f"| {fit.group}{caution} | " + " | ".join(f"{r['saving']:.2f}x" for r in rows) + " |")
        out["transfer_predicted_savings"] = predictions
        return lines + [""]

    def fit(self, table: Table, options: FitOptions) -> list[LawFit]:
        check_table(table, self.columns, self.name, positive=("loss",))
        if (table["D"] < 0).any():
            raise RegrowError(f"column 'D' has the negative value {float(table['D'][table['D'] < 0][0]):g}; D must be >= 0")
        groups = table["group"] if "group" in table else np.full(len(table["D"]), "", dtype=str)
        fits = []
        for group in dict.fromkeys(groups.tolist()):
            fits += self._fit_group(rows_where(table, groups == group), options, group or None)
        return fits

    def _fit_group(self, table: Table, options: FitOptions, group: str | None) -> list[LawFit]:
        where = f" in group {group!r}" if group else ""
        scratch = rows_where(table, (table["method"] == "scratch") & (table["D"] > 0))
        if len(scratch["D"]) == 0:
            raise RegrowError(f"law 'transfer' needs the from-scratch control's curve (rows with method 'scratch' and "
                              f"D > 0){where}")
        control = DataLaw().fit_one(scratch["D"], scratch["loss"], options, f"scratch{where}")
        control_values = {k: v["value"] for k, v in control.parameters.items()}
        sizes = table["N"] if "N" in table else None
        with_size = sizes is not None and len(np.unique(sizes)) > 1
        fits = []
        for method in dict.fromkeys(table["method"].tolist()):
            if method == "scratch":
                continue
            rows = rows_where(table, table["method"] == method)
            d_e = DataLaw().inverse(control_values, rows["loss"])
            d_t = d_e - rows["D"]
            trained = rows["D"] > 0
            usable = trained & np.isfinite(d_t) & (d_t > 0)
            counts = {"points": int(trained.sum()), "below_scratch_asymptote": int((trained & ~np.isfinite(d_e)).sum()),
                      "no_transfer": int((trained & np.isfinite(d_t) & (d_t <= 0)).sum()),
                      "extrapolated": int((usable & (d_e > scratch["D"].max())).sum())}
            start = ~trained
            extras = {"scratch_fit": control.parameters, "counts": counts,
                      "effective_data_at_start": float(np.median(d_e[start])) if start.any() else None}
            law = TransferPower(with_size)
            check_points(int(usable.sum()), len(law.coords), self.name, f"priced points for method {method!r}{where}")
            x = {"logDF": np.log(rows["D"][usable])}
            if with_size:
                x["logN"] = np.log(sizes[table["method"] == method][usable])
            fit = law.fit_points(x, d_t[usable], options)
            grid = np.geomspace(rows["D"][usable].min(), rows["D"][usable].max() * 100, 50)
            fit_x = {"logDF": np.log(grid), **({"logN": np.full_like(grid, x["logN"][0])} if with_size else {})}
            curve = Curve(method, rows["D"][usable].tolist(), d_t[usable].tolist(), grid.tolist(),
                          law.predict(fit.theta, fit_x).tolist())
            fits.append(LawFit(self.name, self.formula, law.parameters(fit, options), law.goodness_of(fit, x, d_t[usable]),
                               [curve], {"xlabel": "D_F (continued-training tokens)", "ylabel": "D_T (tokens transferred)",
                                         "xscale": "log", "yscale": "log"}, extras, law.bound_warnings(fit),
                               group=f"{method}{where}"))
        if not fits:
            raise RegrowError(f"law 'transfer' found no warm-started method beside 'scratch'{where}")
        return fits


def transferred(parameters: dict, d_f: float, size: float | None = None) -> float:
    """D_T predicted at D_F continued-training tokens by a fitted transfer power law."""
    p = {k: v["value"] for k, v in parameters.items()}
    return p["k"] * d_f ** p["alpha"] * (size ** p["beta"] if "beta" in p and size else 1.0)


def predicted_savings(fit: LawFit, flops_per_token: float, pruning_flops: float, budgets: list[float]) -> list[dict]:
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
