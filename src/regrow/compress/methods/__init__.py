"""Pruning methods, one file each; importing this package registers them all in METHODS."""

from regrow.compress.methods import (  # noqa: F401  (registration)
    activation,
    depth,
    magnitude,
    magnitude_sparse,
    random,
    random_sparse,
    sheared,
    sparsegpt,
    wanda,
)
from regrow.compress.methods.base import METHODS, MethodResult, PruneContext, PruningMethod

__all__ = ["METHODS", "MethodResult", "PruneContext", "PruningMethod"]
