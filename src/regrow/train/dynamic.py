"""Dynamic batch loading (Sheared-LLaMA; docs/ALGORITHMS.md §4): every `interval` steps, move
mixture weight towards the domains whose validation loss is furthest above a reference.

    delta_i = max(l_i - r_i, 0)        (clamp: true, the paper; false: l_i - r_i, the released code)
    w_i <- w_i exp(eta delta_i) / sum_j w_j exp(eta delta_j)
    w <- (1 - c) w + c / k             (smoothing c: 0 in the paper, 1e-4 in the released code)

Reference losses are given numbers, the starting model's own losses (`source`), or fitted per
domain from a model family's sizes with L(N) = a / N^b + c, evaluated at the model's size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from regrow.errors import RegrowError


def update_weights(weights: dict[str, float], losses: dict[str, float], reference: dict[str, float],
                   eta: float = 1.0, clamp: bool = True, smoothing: float = 0.0) -> dict[str, float]:
    names = list(weights)
    delta = np.array([losses[n] - reference[n] for n in names])
    if clamp:
        delta = np.maximum(delta, 0.0)
    logits = np.log(np.maximum(np.array([weights[n] for n in names]), 1e-300)) + eta * delta
    w = np.exp(logits - logits.max())
    w = w / w.sum()
    w = (1 - smoothing) * w + smoothing / len(names)
    return dict(zip(names, w.tolist()))


def fit_power_law(params: list[float], losses: list[float]) -> tuple[float, float, float]:
    """Least-squares fit of L(N) = a / N^b + c (a, b >= 0): for each b on a fine grid the
    problem is linear in (a, c); the best b is then refined on a finer grid around it."""
    n = np.asarray(params, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)

    def solve(b: float) -> tuple[float, float, float]:
        x = n ** (-b)
        design = np.stack([x, np.ones_like(x)], axis=1)
        (a, c), *_ = np.linalg.lstsq(design, y, rcond=None)
        if a < 0:  # losses that do not fall with size: a constant fits best
            a, c = 0.0, float(y.mean())
        return float(np.sum((a * x + c - y) ** 2)), float(a), float(c)

    grid = np.linspace(0.01, 2.0, 400)
    best = min(grid, key=lambda b: solve(b)[0])
    fine = np.linspace(max(best - 0.005, 1e-4), best + 0.005, 101)
    b = float(min(fine, key=lambda v: solve(v)[0]))
    _, a, c = solve(b)
    return a, b, c


def check_reference(spec: Any, domains: list[str]) -> None:
    """The shape of `data.dynamic.reference`, checked when the recipe is loaded: `source`,
    {domain: loss} for every mixture domain, or {fit: [>= 3 sizes]} (resolved against a size later)."""
    if spec == "source":
        return
    reference_losses(spec, domains, None, 1)


def reference_losses(spec: Any, domains: list[str], start_losses: dict[str, float] | None, num_params: int) -> dict[str, float]:
    """Resolve `data.dynamic.reference` into one reference loss per mixture domain."""
    if spec == "source":
        if start_losses is None:
            raise ValueError("the source losses are needed for reference: source")
        return {d: start_losses[d] for d in domains}
    if isinstance(spec, dict) and set(spec) == {"fit"}:
        sizes = spec["fit"]
        if not isinstance(sizes, list) or len(sizes) < 3:
            raise RegrowError("data.dynamic.reference.fit needs at least 3 model sizes [{params: N, losses: {domain: loss}}]; "
                              "with fewer, use reference: source")
        out = {}
        for d in domains:
            try:
                points = [(float(s["params"]), float(s["losses"][d])) for s in sizes]
            except (KeyError, TypeError, ValueError) as err:
                raise RegrowError(f"data.dynamic.reference.fit: every size needs params and a loss for domain {d!r}") from err
            a, b, c = fit_power_law(*zip(*points))
            out[d] = a / num_params**b + c
        return out
    if isinstance(spec, dict):
        missing = [d for d in domains if d not in spec]
        if missing:
            raise RegrowError(f"data.dynamic.reference lacks domain(s) {', '.join(missing)} of the mixture")
        values = {}
        for d in domains:
            try:
                values[d] = float(spec[d])
            except (TypeError, ValueError):
                raise RegrowError(f"data.dynamic.reference of {d!r} is {spec[d]!r}, not a number (a validation loss, "
                                  "e.g. 2.1)") from None
            if not math.isfinite(values[d]) or isinstance(spec[d], bool):
                raise RegrowError(f"data.dynamic.reference of {d!r} is {spec[d]!r}, not a finite number (a validation "
                                  "loss, e.g. 2.1)")
        return values
    raise RegrowError(f"data.dynamic.reference {spec!r} is not supported; allowed: source, {{domain: loss}}, "
                      "or {fit: [{params: N, losses: {domain: loss}}, ...]}")
