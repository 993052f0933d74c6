"""The continual pre-training curve with a distribution-shift term (Wang et al. 2025; §7).

L(t) = L0 + A (S1_pt + S1_cpt)^(-alpha) - C1 S2_pt - C2 S2_cpt + B (1 - (1 + E S1_cpt)^(-beta)).

Fitted on one domain's loss over the pre-training run (phase `pt`, where the S_cpt terms are 0)
and one or more continued runs from its end (phase `cpt`). S1/S2 of each phase as in the
annealing law (annealing.py), each phase's own warmup (the re-warm) counted in S1 only;
S1_pt and S2_pt are the pre-training totals during continued training. B > 0 is expected for
an old domain's loss (it rises), B < 0 for the new domain's.
"""

from __future__ import annotations

import numpy as np

from regrow.analysis.laws.annealing import lr_areas, schedule_runs
from regrow.analysis.laws.base import (
    Curve,
    CurveLaw,
    FitOptions,
    LawFit,
    log_of_sum,
    register,
    start_grid,
)
from regrow.analysis.table import (
    Table,
    check_points,
    check_table,
    curve_columns,
    rows_where,
    table_from_rows,
)
from regrow.errors import RegrowError


def cpt_predict(values: dict[str, float], x: dict[str, np.ndarray]) -> np.ndarray:
    v = values
    return (v["L0"] + v["A"] * (x["S1pt"] + x["S1cpt"]) ** (-v["alpha"]) - v["C1"] * x["S2pt"] - v["C2"] * x["S2cpt"]
            + v["B"] * (1 - (1 + v["E"] * x["S1cpt"]) ** (-v["beta"])))


@register("cpt")
class ContinualPretrainingLaw(CurveLaw):
    summary = "continual pre-training curve across the pt and cpt phases (Wang et al.)"
    formula = "L(t) = L0 + A (S1_pt + S1_cpt)^(-alpha) - C1 S2_pt - C2 S2_cpt + B (1 - (1 + E S1_cpt)^(-beta))"
    columns = ("run", "phase", "step", "lr", "loss")
    blank = ("loss",)
    report_rank = 4

    def study_table(self, study):
        """Per domain and data cell: the study's pre-training curve (phase pt), then the unpruned
        source's continued runs (phase cpt)."""
        base = study.base_run()
        if base is None:
            raise RegrowError("law 'cpt' on a study needs the study's own pre-training run (source.pretrain), whose "
                              "curve is the pt phase; this study starts from a given model: use --csv")
        sources = [(n, d) for n, d in study.runs() if n.role == "source"]
        if not sources:
            raise RegrowError("law 'cpt' needs finished runs of the unpruned source (controls.source: true)")
        rows = curve_columns("run", "phase", "group")
        for domain in study.domains or [*study.old, *study.new]:
            for name, run_dir in sources:
                group = f"{domain} {name.replay}{' dynamic' if name.dynamic else ''}"
                if group not in rows["group"]:
                    study.curve_rows(rows, base, [domain], run="base", phase="pt", group=group)
                study.curve_rows(rows, run_dir, [domain], run=name.schedule, phase="cpt", group=group)
        return table_from_rows(rows)
    coords = ("l0", "a", "alpha", "c1", "c2", "B", "e", "beta")
    bounds = [(-10.0, 5.0), (-20.0, 20.0), (0.0, 5.0), (-30.0, 20.0), (-30.0, 20.0), (-20.0, 20.0), (-20.0, 20.0),
              (0.0, 5.0)]

    def grid(self, x, y):
        return start_grid(np.log(np.array([0.3, 0.6, 0.9]) * y.min()), np.log(np.geomspace(1e-2, 1e2, 5)),
                          [0.2, 0.5, 1.0], np.log([1e-2, 1.0, 1e2]), np.log([1e-2, 1.0, 1e2]),
                          [-1.0, -0.3, 0.0, 0.3, 1.0], np.log([1e-1, 1e1, 1e3]), [0.3, 1.0, 2.0])

    def log_predict(self, theta, x, jacobian=False):
        l0, a, alpha, c1, c2, b, e, beta = (theta[:, i : i + 1] for i in range(8))
        area = x["S1pt"] + x["S1cpt"]
        floor = np.exp(l0) * np.ones_like(area)
        power = np.exp(a) * area ** (-alpha)
        anneal_pt, anneal_cpt = np.exp(c1) * x["S2pt"], np.exp(c2) * x["S2cpt"]
        q = 1 + np.exp(e) * x["S1cpt"]
        shift = 1 - q ** (-beta)
        loss = floor + power - anneal_pt - anneal_cpt + b * shift
        partials = None
        if jacobian:
            partials = [floor, power, -power * np.log(area), -anneal_pt, -anneal_cpt, shift,
                        b * beta * q ** (-beta - 1) * np.exp(e) * x["S1cpt"], b * q ** (-beta) * np.log(q)]
        return log_of_sum(loss, partials)

    def values(self, theta):
        return {"L0": np.exp(theta[:, 0]), "A": np.exp(theta[:, 1]), "alpha": theta[:, 2], "C1": np.exp(theta[:, 3]),
                "C2": np.exp(theta[:, 4]), "B": theta[:, 5], "E": np.exp(theta[:, 6]), "beta": theta[:, 7]}

    def fit(self, table: Table, options: FitOptions) -> list[LawFit]:
        check_table(table, self.columns, self.name, positive=("loss",))
        phases = set(table["phase"].tolist())
        if not phases <= {"pt", "cpt"}:
            raise RegrowError(f"law 'cpt': column 'phase' has {sorted(phases - {'pt', 'cpt'})}; allowed: pt, cpt")
        pt = schedule_runs(rows_where(table, table["phase"] == "pt"), self.name)
        cpt = schedule_runs(rows_where(table, table["phase"] == "cpt"), self.name)
        if len(pt) != 1 or not cpt:
            raise RegrowError(f"law 'cpt' needs exactly one pre-training run (phase pt) and at least one continued run "
                              f"(phase cpt); got {len(pt)} pt and {len(cpt)} cpt run(s)")
        (pt_name, (pt_lrs, pt_steps, pt_losses)), = pt.items()
        pt_s1, pt_s2 = lr_areas(pt_lrs)
        keep = pt_steps >= options.min_step
        cols = {k: [] for k in ("S1pt", "S2pt", "S1cpt", "S2cpt")}
        ys, series = [], []

        def add(label, s1pt, s2pt, s1c, s2c, y, steps):
            for key, value in zip(cols, (s1pt, s2pt, s1c, s2c)):
                cols[key].append(np.broadcast_to(value, y.shape).astype(np.float64))
            ys.append(y)
            series.append((label, steps, y, len(y)))

        add(pt_name, pt_s1[pt_steps[keep] - 1], pt_s2[pt_steps[keep] - 1], 0.0, 0.0, pt_losses[keep], pt_steps[keep])
        for run, (lrs, steps, losses) in cpt.items():
            s1, s2 = lr_areas(lrs)
            s1 = np.concatenate([[0.0], s1])[steps]
            s2 = np.concatenate([[0.0], s2])[steps]  # step 0 = the pre-training end
            add(run, pt_s1[-1], pt_s2[-1], s1, s2, losses, steps)
        x = {k: np.concatenate(v) for k, v in cols.items()}
        y = np.concatenate(ys)
        check_points(len(y), len(self.coords), self.name, "measured points")
        fit = self.fit_points(x, y, options)
        params = self.parameters(fit, options)
        best = {k: v["value"] for k, v in params.items()}
        pred = cpt_predict(best, x)
        curves, start = [], 0
        for label, steps, observed, n in series:
            offset = 0 if label == pt_name else len(pt_lrs)
            curves.append(Curve(label, (steps + offset).tolist(), observed.tolist(), (steps + offset).tolist(),
                                pred[start : start + n].tolist()))
            start += n
        extras = {"shift_sign": "B > 0: the loss rises with continued training (forgetting)" if best["B"] > 0
                  else "B < 0: the loss falls with continued training (adaptation)",
                  "pt_run": pt_name, "cpt_runs": list(cpt)}
        return [LawFit(self.name, self.formula, params, self.goodness_of(fit, x, y), curves,
                       {"xlabel": "step (pre-training, then continued)", "ylabel": "loss", "xscale": "linear",
                        "yscale": "linear"}, extras, self.bound_warnings(fit))]
