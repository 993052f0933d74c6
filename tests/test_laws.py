"""Every scaling law recovers the parameters its data were generated with, within its interval.

Data are made from known parameters plus multiplicative log-normal noise, by the formulas as
they are written out in this file (never by the law's own prediction code, so an error in a
law's formula cannot cancel out); the fit must land each parameter's true value inside its 95%
bootstrap interval and describe the points well. Every analytic Jacobian is checked against
central finite differences at random points.
"""

from __future__ import annotations

import numpy as np
import pytest

from regrow.analysis.laws import LAWS, FitOptions, build_law
from regrow.analysis.laws.annealing import lr_areas, predict_curve, schedule_warnings, warmup_length
from regrow.analysis.laws.base import CurveLaw
from regrow.analysis.laws.chinchilla import compute_optimal
from regrow.analysis.laws.transfer import TransferPower

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


def areas(lrs: np.ndarray, decay: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    """Tissue et al.'s forward area S1 = sum of LRs and annealing area S2 = sum of the momentum
    m_i = decay m_(i-1) + (lr_(i-1) - lr_i), which starts after the warmup (written out here)."""
    s1, s2, m, total, peak = [], [], 0.0, 0.0, int(np.argmax(lrs))
    for i, lr in enumerate(lrs):
        if i > peak:
            m = decay * m + (lrs[i - 1] - lr)
        total += m
        s1.append(lrs[: i + 1].sum())
        s2.append(total)
    return np.array(s1), np.array(s2)


def annealing_formula(v: dict, lrs: np.ndarray) -> np.ndarray:
    """L(s) = L0 + A S1^-alpha - C S2."""
    s1, s2 = areas(lrs)
    return v["L0"] + v["A"] * s1 ** -v["alpha"] - v["C"] * s2


def cpt_formula(v: dict, s1_pt, s2_pt, s1_cpt, s2_cpt) -> np.ndarray:
    """L = L0 + A (S1pt + S1cpt)^-alpha - C1 S2pt - C2 S2cpt + B (1 - (1 + E S1cpt)^-beta)."""
    return (v["L0"] + v["A"] * (s1_pt + s1_cpt) ** -v["alpha"] - v["C1"] * s2_pt - v["C2"] * s2_cpt
            + v["B"] * (1 - (1 + v["E"] * s1_cpt) ** -v["beta"]))


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


def test_fits_the_data_do_not_determine_are_doubted_in_the_report():
    from regrow.study.report.sections import _cautions

    d = np.geomspace(1e5, 1e8, 12)
    steep = 2.0 + 1e40 / d ** 6.0  # beta 6 is outside the law's bounds (0, 5): the fit ends on the bound
    flat = noisy(np.full(len(d), 3.0), 0.01, 1)  # no trend at all: the formula explains nothing
    table = {"D": np.tile(d, 2), "group": np.repeat(["steep", "flat"], len(d)), "loss": np.concatenate([steep, flat])}
    steep_fit, flat_fit = build_law("data").fit_table(table, FitOptions(bootstrap=0))
    assert steep_fit.parameters["beta"]["value"] == pytest.approx(5.0)
    assert any("'beta'" in doubt and "bound" in doubt for doubt in steep_fit.doubts())
    assert flat_fit.goodness["r2"] < 0.5  # R^2 = 1 - SS_res / SS_tot of points without a trend
    assert flat_fit.doubts()[-1] == f"R^2 {flat_fit.goodness['r2']:.2f}: the formula does not describe these points"
    lines = _cautions([steep_fit, flat_fit])
    assert lines[0].startswith("Cautions") and any(line.startswith("- steep: coordinate 'beta'") for line in lines)
    assert _cautions([fit for fit in build_law("data").fit_table(
        {"D": d, "loss": noisy(2.0 + 300.0 / d ** 0.4, 0.002, 0)}, FitOptions(bootstrap=0))]) == []


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
    table = curve_rows({"const": constant(400), "cos": cosine(400)}, lambda _, lrs: annealing_formula(truth, lrs), 10, 2)
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
    s1_pt, s2_pt = areas(pt)

    def pt_loss(_, lrs):
        return cpt_formula(truth, s1_pt, s2_pt, 0 * s1_pt, 0 * s2_pt)

    def cpt_loss(_, lrs):
        s1, s2 = areas(lrs)
        return cpt_formula(truth, s1_pt[-1], s2_pt[-1], s1, s2)

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


def test_the_areas_written_here_are_the_laws_areas():
    """The prediction code agrees with the formula written out above (the fits test the rest)."""
    for lrs in (cosine(300), constant(200), np.concatenate([cosine(300), np.zeros(20)])):
        expected_s1, expected_s2 = areas(lrs)
        s1, s2 = lr_areas(lrs)
        np.testing.assert_allclose(s1, expected_s1, rtol=1e-12)
        np.testing.assert_allclose(s2, expected_s2, rtol=1e-9, atol=1e-15)
        values = {"L0": 2.0, "A": 0.5, "alpha": 0.5, "C": 1.0}
        np.testing.assert_allclose(predict_curve(values, lrs), annealing_formula(values, lrs), rtol=1e-9)


def _inputs(law: CurveLaw, rng) -> dict[str, np.ndarray]:
    """Positive random inputs for every column a law's log_predict reads."""
    columns = {"logN": rng.uniform(15, 22, 9), "logD": rng.uniform(15, 25, 9), "logDF": rng.uniform(8, 15, 9),
               "S1": rng.uniform(0.05, 2.0, 9), "S2": rng.uniform(0.0, 0.3, 9), "S1pt": rng.uniform(0.1, 2.0, 9),
               "S2pt": rng.uniform(0.0, 0.3, 9), "S1cpt": rng.uniform(0.0, 1.0, 9), "S2cpt": rng.uniform(0.0, 0.2, 9)}
    return columns


CURVE_LAWS = [*(name for name, cls in LAWS.items() if issubclass(cls, CurveLaw)), "transfer-power", "transfer-power-N"]


@pytest.mark.parametrize("name", CURVE_LAWS)
def test_analytic_jacobians_match_finite_differences(name):
    law = {"transfer-power": TransferPower(False), "transfer-power-N": TransferPower(True)}.get(name) or LAWS[name]()
    rng = np.random.default_rng(len(name))
    x = _inputs(law, rng)
    for _ in range(5):  # random points inside the bounds (away from their edges)
        lo, hi = np.array(law.bounds).T
        theta = lo + (hi - lo) * rng.uniform(0.3, 0.7, len(lo))
        if name in ("annealing", "cpt"):  # keep the prediction positive: small annealing terms
            theta = np.where(np.isin(np.arange(len(theta)), [law.coords.index(c) for c in law.coords if c.startswith("c")]),
                             rng.uniform(-6, -3, len(theta)), theta)
            theta[0] = rng.uniform(0.5, 1.0)
        value, jac = law.log_predict(theta[None], x, jacobian=True)
        assert np.isfinite(value).all(), (name, theta)
        for j in range(len(theta)):
            step = 1e-6 * max(1.0, abs(theta[j]))
            up, down = theta.copy(), theta.copy()
            up[j] += step
            down[j] -= step
            numeric = (law.log_predict(up[None], x)[0] - law.log_predict(down[None], x)[0]) / (2 * step)
            np.testing.assert_allclose(jac[0, :, j], numeric[0], rtol=1e-5, atol=1e-7,
                                       err_msg=f"{name}: d/d{law.coords[j]} at {theta}")
