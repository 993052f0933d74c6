"""Pruning methods, one file each; importing this package registers them all in METHODS."""

from regrow.compress.methods import activation, depth, magnitude, random, sheared  # noqa: F401  (registration)
from regrow.compress.methods.base import METHODS, MethodResult, PruneContext, PruningMethod

__all__ = ["METHODS", "MethodResult", "PruneContext", "PruningMethod"]
