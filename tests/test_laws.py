"""Every scaling law recovers the parameters its data were generated with, within its interval.

Data are made from known parameters plus multiplicative log-normal noise; the fit must land
each parameter's true value inside its 95% bootstrap interval and describe the points well.
"""

from __future__ import annotations

import numpy as np
import pytest

from regrow.analysis.laws import FitOptions, build_law
from regrow.analysis.laws.annealing import lr_areas, predict_curve, schedule_warnings, warmup_length
from regrow.analysis.laws.chinchilla import compute_optimal
from regrow.analysis.laws.cpt import cpt_predict

OPTIONS = FitOptions(bootstrap=40, seed=0)


def noisy(values: np.ndarray, sd: float, seed: int) -> np.ndarray:
    return values * np.exp(np.random.default_rng(seed).normal(0.0, sd, len(values)))


def assert_recovered(fit, truth: dict[str, float]) -> None:
    for name, value in truth.items():
        p = fit.parameters[name]
        assert p["low"] <= value <= p["high"], f"{name}: true {value} outside [{p['low']}, {p['high']}] (fit {p['value']})"
    assert fit.goodness["r2"] > 0.99


def cosine(steps: int, peak: float = 1e-3, warmup: int = 10, floor: float = 1e-4) -> np.ndarray:
    s = np.arange(1, steps + 1)
    return np.where(s <= warmup, peak * s / warmup, floor + (peak - floor) * 0.5 * (1 + np.cos(np.pi * (s - warmup) / (steps - warmup))))


def constant(steps: int, peak: float = 1e-3, warmup: int = 10) -> np.ndarray:
    s = np.arange(1, steps + 1)
    return np.where(s <= warmup, peak * s / warmup, peak)


def curve_rows(runs: dict[str, np.ndarray], loss_of, every: int, seed: int, phase: str | None = None) -> dict:
    rows = {"run": [], "step": [], "lr": [], "loss": []}
    for name, lrs in runs.items():
        losses = loss_of(name, lrs)
        for s in range(1, len(lrs) + 1):
            rows["run"].append(name)
            rows["step"].append(s)
            rows["lr"].append(lrs[s - 1])
            rows["loss"].append(losses[s - 1] if s % every == 0 else np.nan)
    table = {k: np.array(v, dtype=str if k == "run" else np.float64) for k, v in rows.items()}
    measured = ~np.isnan(table["loss"])
    table["loss"][measured] = noisy(table["loss"][measured], 0.002, seed)
    if phase is not None:
        table["phase"] = np.array([phase] * len(table["run"]), dtype=str)
    return table


def test_chinchilla_recovers_parameters_and_compute_optimum():
    truth = {"E": 1.82, "A": 482.0, "alpha": 0.348, "B": 2085.0, "beta": 0.366}  # Besiroglu et al.'s values
    n, d = np.meshgrid(np.geomspace(1e7, 3e9, 7), np.geomspace(1e8, 3e11, 7))
    n, d = n.ravel(), d.ravel()
    loss = noisy(truth["E"] + truth["A"] / n ** truth["alpha"] + truth["B"] / d ** truth["beta"], 0.002, 1)
    (fit,) = build_law("chinchilla").fit_table({"N": n, "D": d, "loss": loss}, OPTIONS)
    assert_recovered(fit, truth)
    # the allocation follows the closed form: N_opt ~ C^(beta/(alpha+beta)); 6 N D = C
    opt = compute_optimal(truth, 1e22)
    assert opt["N_opt"] * opt["D_opt"] * 6 == pytest.approx(1e22, rel=1e-9)
    ten = compute_optimal(truth, 1e23)
    assert ten["N_opt"] / opt["N_opt"] == pytest.approx(10 ** (0.366 / (0.348 + 0.366)), rel=1e-9)


def test_data_law_recovers_parameters_per_group():
    d = np.geomspace(1e5, 1e8, 20)
    truths = {"a": {"E": 2.0, "B": 300.0, "beta": 0.4}, "b": {"E": 2.5, "B": 80.0, "beta": 0.3}}
    table = {"D": np.tile(d, 2), "group": np.repeat(list(truths), len(d)),
             "loss": np.concatenate([noisy(t["E"] + t["B"] / d ** t["beta"], 0.002, i) for i, t in enumerate(truths.values())])}
    fits = build_law("data").fit_table(table, OPTIONS)
    assert [f.group for f in fits] == ["a", "b"]
    for fit, truth in zip(fits, truths.values()):
        assert_recovered(fit, truth)


def test_lr_areas_match_the_definition():
    lrs = np.array([0.5, 1.0, 1.0, 0.6, 0.2, 0.2])  # warmup 2 steps, then decay
    s1, s2 = lr_areas(lrs, decay=0.5)
    assert warmup_length(lrs) == 1
    assert s1.tolist() == pytest.approx(np.cumsum(lrs).tolist())
    m = [0.0, 0.0, 0.0]  # the warmup's rise is not annealing
    for i in range(3, 6):
        m.append(0.5 * m[-1] + (lrs[i - 1] - lrs[i]))
    assert s2.tolist() == pytest.approx(np.cumsum(m).tolist())


def test_annealing_law_recovers_parameters_from_constant_and_cosine():
    truth = {"L0": 2.0, "A": 0.5, "alpha": 0.5, "C": 1.0}
    table = curve_rows({"const": constant(400), "cos": cosine(400)}, lambda _, lrs: predict_curve(truth, lrs), 10, 2)
    (fit,) = build_law("annealing").fit_table(table, OPTIONS)
    assert_recovered(fit, truth)
    assert fit.goodness["rmse"] < fit.extras["power_law_in_steps_goodness"]["rmse"]


def test_annealing_law_warns_on_its_known_failure_modes():
    peak = 1e-3
    assert schedule_warnings(cosine(300, peak), peak) == []
    zero_tail = np.concatenate([cosine(300, peak), np.zeros(50)])
    (warning,) = schedule_warnings(zero_tail, peak)
    assert "50 step(s) at LR 0" in warning
    (warning,) = schedule_warnings(cosine(300, 3 * peak, floor=3e-4), peak)
    assert "above the largest peak" in warning
    # and the failure is real: the prediction keeps falling over zero-LR steps
    values = {"L0": 2.0, "A": 0.5, "alpha": 0.5, "C": 1.0}
    curve = predict_curve(values, zero_tail)
    assert (np.diff(curve[300:]) < 0).all()


def test_cpt_law_recovers_parameters_and_the_sign_of_the_shift():
    truth = {"L0": 2.0, "A": 0.6, "alpha": 0.5, "C1": 1.0, "C2": 1.5, "B": 0.3, "E": 20.0, "beta": 1.0}
    pt = cosine(400)
    s1_pt, s2_pt = lr_areas(pt)

    def pt_loss(_, lrs):
        return cpt_predict(truth, {"S1pt": s1_pt, "S2pt": s2_pt, "S1cpt": 0 * s1_pt, "S2cpt": 0 * s2_pt})

    def cpt_loss(_, lrs):
        s1, s2 = lr_areas(lrs)
        return cpt_predict(truth, {"S1pt": s1_pt[-1], "S2pt": s2_pt[-1], "S1cpt": s1, "S2cpt": s2})

    parts = [curve_rows({"pt": pt}, pt_loss, 10, 3, "pt"),
             curve_rows({"cos": cosine(300), "const": constant(300, 5e-4)}, cpt_loss, 10, 4, "cpt")]
    table = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    (fit,) = build_law("cpt").fit_table(table, OPTIONS)
    assert_recovered(fit, truth)
    assert fit.extras["shift_sign"].startswith("B > 0")


def test_transfer_recovers_effective_data_power_law():
    scratch = {"E": 2.0, "B": 300.0, "beta": 0.4}
    k, alpha = 50.0, 0.7
    d = np.geomspace(1e4, 3e6, 16)
    scratch_loss = noisy(scratch["E"] + scratch["B"] / d ** scratch["beta"], 0.001, 5)
    d_f = np.geomspace(1e4, 1e6, 10)
    warm_loss = noisy(scratch["E"] + scratch["B"] / (d_f + k * d_f ** alpha) ** scratch["beta"], 0.0005, 6)
    table = {"method": np.array(["scratch"] * len(d) + ["pruned"] * len(d_f)), "D": np.concatenate([d, d_f]),
             "loss": np.concatenate([scratch_loss, warm_loss])}
    (fit,) = build_law("transfer").fit_table(table, OPTIONS)
    assert fit.group == "pruned"
    assert_recovered(fit, {"k": k, "alpha": alpha})
    assert fit.extras["counts"]["points"] == 10
