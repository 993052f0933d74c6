"""`magnitude-sparse`: zero the weights of smallest |W| in each output row (or N:M group); no data."""

from regrow.compress.methods.base import SparseMethod, register
from regrow.compress.sparsity import SparseResult, sparse_linears


@register("magnitude-sparse")
class MagnitudeSparse(SparseMethod):
    needs_data = False
    summary = "zero the smallest-magnitude weights of each row or N:M group (no data): the sparse baseline"

    def sparsify(self, ctx) -> SparseResult:
        masks = {}
        for layer in sparse_linears(ctx.model, ctx.adapter).values():
            for name, module in layer.items():
                masks[f"{name}.weight"] = ctx.target.keep(module.weight.detach().abs().float())
        return SparseResult(masks)
