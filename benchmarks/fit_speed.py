"""Speed of the scaling-law fitter: analytic numpy Jacobians vs. torch autograd, same L-BFGS-B.

Both sides fit the Chinchilla form on the same synthetic points (Besiroglu et al.'s parameters
plus noise) from the same grid of starts with the same bootstrap, and must agree on the
parameters. Prints seconds per fit (median of --repeats) and the speed-up.

    python benchmarks/fit_speed.py [--bootstrap 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from regrow.analysis import fit as fitting
from regrow.analysis.laws.chinchilla import Chinchilla


def data(seed: int = 0):
    n, d = np.meshgrid(np.geomspace(1e7, 3e9, 7), np.geomspace(1e8, 3e11, 7))
    n, d = n.ravel(), d.ravel()
    loss = (1.82 + 482 / n ** 0.348 + 2085 / d ** 0.366) * np.exp(np.random.default_rng(seed).normal(0, 0.002, n.size))
    return {"logN": np.log(n), "logD": np.log(d)}, loss


def autograd_log_predict(law: Chinchilla, x: dict[str, np.ndarray]):
    """The baseline: the same formula in torch, Jacobian by autograd (one backward per point row)."""
    tx = {k: torch.as_tensor(v) for k, v in x.items()}

    def log_predict(theta: np.ndarray, jacobian: bool):
        t = torch.tensor(theta, requires_grad=jacobian)
        a, b, e, alpha, beta = (t[:, i : i + 1] for i in range(5))
        terms = torch.stack([a - alpha * tx["logN"], b - beta * tx["logD"], e.expand(-1, tx["logN"].shape[0])])
        value = torch.logsumexp(terms, dim=0)
        if not jacobian:
            return value.detach().numpy(), None
        jac = torch.autograd.functional.jacobian(
            lambda th: torch.logsumexp(torch.stack([th[0] - th[3] * tx["logN"], th[1] - th[4] * tx["logD"],
                                                    th[2].expand(tx["logN"].shape[0])]), dim=0), t[0].detach())
        return value.detach().numpy(), jac.numpy()[None]

    return log_predict


def timed(log_predict, y, law, bootstrap: int, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fitting.fit_curve(log_predict, y, law.grid(None, y), law.bounds, bootstrap=bootstrap)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    law = Chinchilla()
    x, y = data()
    fast, fast_fit = timed(lambda theta, jac: law.log_predict(theta, x, jac), y, law, args.bootstrap, args.repeats)
    slow, slow_fit = timed(autograd_log_predict(law, x), y, law, args.bootstrap, args.repeats)
    agree = float(np.abs(fast_fit.theta - slow_fit.theta).max())
    print(json.dumps({"points": int(y.size), "bootstrap": args.bootstrap, "numpy_jacobian_s": round(fast, 3),
                      "torch_autograd_s": round(slow, 3), "speedup": round(slow / fast, 2),
                      "max_parameter_difference": agree}, indent=2))


if __name__ == "__main__":
    main()
