"""A toy scaling law in one file: L(D) = A * D^(-alpha), least squares on log-log."""

import numpy as np

from regrow.analysis.laws import LAWS
from regrow.analysis.laws.base import Curve, Law, LawFit


@LAWS.register("toy-power")
class PurePower(Law):
    summary = "L(D) = A D^-alpha without a floor (a test's toy)"
    formula = "L(D) = A * D^(-alpha)"
    columns = ("D", "loss")

    def fit(self, table, options) -> list[LawFit]:
        slope, intercept = np.polyfit(np.log(table["D"]), np.log(table["loss"]), 1)
        predicted = np.exp(intercept) * table["D"] ** slope
        residual = table["loss"] - predicted
        r2 = 1 - (residual ** 2).sum() / ((table["loss"] - table["loss"].mean()) ** 2).sum()
        curve = Curve("data", table["D"].tolist(), table["loss"].tolist(), table["D"].tolist(), predicted.tolist())
        return [LawFit(self.name, self.formula, {"A": {"value": float(np.exp(intercept))}, "alpha": {"value": float(-slope)}},
                       {"r2": float(r2), "rmse": float(np.sqrt((residual ** 2).mean())), "points": len(residual)}, [curve],
                       {"xlabel": "D", "ylabel": "loss", "xscale": "log", "yscale": "log"})]
