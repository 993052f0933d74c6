"""Scaling laws (docs/ALGORITHMS.md §7): one file per law, registered by name."""

from regrow.analysis.laws import annealing, chinchilla, cpt, data, transfer  # noqa: F401  (registration)
from regrow.analysis.laws.base import LAWS, FitOptions, LawFit, build_law

__all__ = ["LAWS", "FitOptions", "LawFit", "build_law"]
