"""Robust curve fitting for scaling laws (ALGORITHMS.md §7).

Minimise sum_i w_i Huber_delta(log f(x_i; theta) - log y_i) (delta 1e-3, as Hoffmann et al.
approach 3) with L-BFGS-B. The objective of every start of a grid is evaluated in one batch;
L-BFGS then runs from the best `keep` of them and the lowest optimum wins. Gradients come from
torch autograd in float64, so a law is only its formula. Confidence intervals: the percentile
bootstrap over points (multinomial weights, so a law never re-indexes its data), each resample
started from the full-data optimum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

LogPredict = Callable[[torch.Tensor], torch.Tensor]  # theta [S, P] -> log prediction [S, n]


@dataclass
class CurveFit:
    theta: np.ndarray  # best parameters (the law's coordinates)
    objective: float
    boot: np.ndarray  # [B, P] bootstrap optima (empty when no bootstrap)


def huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _objective(log_predict: LogPredict, log_y: torch.Tensor, weights: torch.Tensor, delta: float):
    def batch(theta: torch.Tensor) -> torch.Tensor:
        pred = log_predict(theta)
        r = torch.nan_to_num(pred - log_y, nan=1e6, posinf=1e6, neginf=-1e6)
        return (huber(r, delta) * weights).sum(-1)

    return batch


def _lbfgs(objective, start: np.ndarray, bounds) -> tuple[np.ndarray, float]:
    def value_and_grad(x: np.ndarray):
        theta = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        value = objective(theta[None])[0]
        (grad,) = torch.autograd.grad(value, theta)
        return float(value.detach()), np.nan_to_num(grad.numpy(), nan=0.0)

    result = minimize(value_and_grad, start, jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": 500, "ftol": 1e-15, "gtol": 1e-12})
    return result.x, float(result.fun)


def _best(objective, starts: np.ndarray, bounds) -> tuple[np.ndarray, float]:
    best_x, best_f = starts[0], float("inf")
    for start in starts:
        x, f = _lbfgs(objective, start, bounds)
        if f < best_f:
            best_x, best_f = x, f
    return best_x, best_f


def _rank_starts(objective, grid: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        values = torch.cat([objective(torch.from_numpy(chunk)) for chunk in np.array_split(grid, max(1, len(grid) // 4096))])
    return grid[np.argsort(values.numpy(), kind="stable")]


def fit_curve(log_predict: LogPredict, y: np.ndarray, grid: np.ndarray, bounds: list[tuple[float, float]],
              delta: float = 1e-3, keep: int = 16, bootstrap: int = 100, seed: int = 0) -> CurveFit:
    """Fit on all points, then `bootstrap` resamples of them (0: no intervals)."""
    log_y = torch.log(torch.as_tensor(y, dtype=torch.float64))
    full = _objective(log_predict, log_y, torch.ones_like(log_y), delta)
    grid = np.clip(np.asarray(grid, dtype=np.float64), [b[0] for b in bounds], [b[1] for b in bounds])
    ranked = _rank_starts(full, grid)
    theta, value = _best(full, ranked[:keep], bounds)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(bootstrap):
        counts = rng.multinomial(len(y), np.full(len(y), 1.0 / len(y)))
        resample = _objective(log_predict, log_y, torch.as_tensor(counts, dtype=torch.float64), delta)
        boot.append(_lbfgs(resample, theta, bounds)[0])
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
