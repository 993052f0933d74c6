"""Robust curve fitting for scaling laws (docs/ALGORITHMS.md §7).

Minimise sum_i w_i Huber_delta(log f(x_i; theta) - log y_i) (delta 1e-3, as Hoffmann et al.
approach 3) with L-BFGS-B (scipy). The objective of every start of a grid is evaluated in one
batch; L-BFGS then runs from the best `keep` of them and the lowest optimum wins. A law gives
its log prediction and the analytic Jacobian in numpy (tens of microseconds per evaluation;
the fits run thousands of them). Confidence intervals: the percentile bootstrap over points
(multinomial weights, so a law never re-indexes its data), each resample started from the
full-data optimum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

LBFGS_OPTIONS = {"maxiter": 300, "ftol": 1e-13, "gtol": 1e-10}
# theta [S, P], with_jacobian -> (log prediction [S, n], d log prediction / d theta [S, n, P] or None)
LogPredict = Callable[[np.ndarray, bool], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class CurveFit:
    theta: np.ndarray  # best parameters (the law's coordinates)
    objective: float
    boot: np.ndarray  # [B, P] bootstrap optima (empty when no bootstrap)


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _residuals(log_predict: LogPredict, theta: np.ndarray, log_y: np.ndarray, jacobian: bool):
    with np.errstate(all="ignore"):
        pred, jac = log_predict(theta, jacobian)
    return np.nan_to_num(pred - log_y, nan=1e6, posinf=1e6, neginf=-1e6), jac


def _batch_objective(log_predict: LogPredict, log_y: np.ndarray, weights: np.ndarray, delta: float, theta: np.ndarray):
    r, _ = _residuals(log_predict, theta, log_y, False)
    return (huber(r, delta) * weights).sum(-1)


def _lbfgs(log_predict: LogPredict, log_y: np.ndarray, weights: np.ndarray, delta: float, start: np.ndarray,
           bounds) -> tuple[np.ndarray, float]:
    def value_and_grad(x: np.ndarray):
        r, jac = _residuals(log_predict, x[None], log_y, True)
        r, jac = r[0], np.nan_to_num(jac[0])
        grad = (weights * np.clip(r, -delta, delta)) @ jac  # d Huber / d r = clip(r, -delta, delta)
        return float((huber(r, delta) * weights).sum()), grad

    result = minimize(value_and_grad, start, jac=True, method="L-BFGS-B", bounds=bounds, options=LBFGS_OPTIONS)
    return result.x, float(result.fun)


def fit_curve(log_predict: LogPredict, y: np.ndarray, grid: np.ndarray, bounds: list[tuple[float, float]],
              delta: float = 1e-3, keep: int = 16, bootstrap: int = 100, seed: int = 0) -> CurveFit:
    """Fit on all points, then `bootstrap` resamples of them (0: no intervals)."""
    log_y = np.log(np.asarray(y, dtype=np.float64))
    ones = np.ones_like(log_y)
    grid = np.clip(np.asarray(grid, dtype=np.float64), [b[0] for b in bounds], [b[1] for b in bounds])
    values = np.concatenate([_batch_objective(log_predict, log_y, ones, delta, chunk)
                             for chunk in np.array_split(grid, max(1, len(grid) // 2048))])
    starts = grid[np.argsort(values, kind="stable")[:keep]]
    theta, value = min((_lbfgs(log_predict, log_y, ones, delta, s, bounds) for s in starts), key=lambda r: r[1])
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(bootstrap):
        counts = rng.multinomial(len(y), np.full(len(y), 1.0 / len(y))).astype(np.float64)
        boot.append(_lbfgs(log_predict, log_y, counts, delta, theta, bounds)[0])
    return CurveFit(theta, value, np.array(boot).reshape(len(boot), len(theta)))


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of one reported quantity."""
    lo, hi = np.nanpercentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def goodness(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """RMSE and R^2 of the loss, and RMSE of log loss (what the fit minimises, up to Huber)."""
    resid = pred - y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {
        "points": len(y),
        "rmse": float(np.sqrt((resid ** 2).mean())),
        "rmse_log": float(np.sqrt(((np.log(np.maximum(pred, 1e-12)) - np.log(y)) ** 2).mean())),
        "r2": 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
    }
