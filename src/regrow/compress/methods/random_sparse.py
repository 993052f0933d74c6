"""`random-sparse`: zero uniformly random weights of each row (or N:M group), seeded: the control."""

import torch

from regrow.compress.methods.base import SparseMethod, register
from regrow.compress.sparsity import SparseResult, sparse_linears


@register("random-sparse")
class RandomSparse(SparseMethod):
    needs_data = False
    summary = "zero random weights of each row or N:M group (seeded): the sparse control"

    def sparsify(self, ctx) -> SparseResult:
        g = torch.Generator().manual_seed(ctx.cfg.seed)
        masks = {}
        for layer in sparse_linears(ctx.model, ctx.adapter).values():
            for name, module in layer.items():
                masks[f"{name}.weight"] = ctx.target.keep(torch.rand(module.weight.shape, generator=g))
        return SparseResult(masks, {"seed": ctx.cfg.seed})
