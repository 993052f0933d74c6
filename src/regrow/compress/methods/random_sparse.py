"""`random-sparse`: zero uniformly random weights of each row (or N:M group), seeded: the control."""

import torch

from regrow.compress.methods.base import SparseMethod, register
from regrow.compress.sparsity import SparseResult, masks_by_parameter, sparse_units


@register("random-sparse")
class RandomSparse(SparseMethod):
    needs_data = False
    summary = "zero random weights of each row or N:M group (seeded): the sparse control"

    def sparsify(self, ctx) -> SparseResult:
        g = torch.Generator().manual_seed(ctx.cfg.seed)
        units = {name: unit for layer in sparse_units(ctx.model, ctx.adapter).values() for name, unit in layer.items()}
        kept = {name: ctx.target.keep(torch.rand(unit.weight.shape, generator=g)) for name, unit in units.items()}
        return SparseResult(masks_by_parameter(units, kept), {"seed": ctx.cfg.seed})
