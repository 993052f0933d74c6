"""`magnitude-sparse`: zero the weights of smallest |W| in each output row (or N:M group); no data."""

from regrow.compress.methods.base import SparseMethod, register
from regrow.compress.sparsity import SparseResult, masks_by_parameter, sparse_units


@register("magnitude-sparse")
class MagnitudeSparse(SparseMethod):
    needs_data = False
    summary = "zero the smallest-magnitude weights of each row or N:M group (no data): the sparse baseline"

    def sparsify(self, ctx) -> SparseResult:
        units = {name: unit for layer in sparse_units(ctx.model, ctx.adapter).values() for name, unit in layer.items()}
        kept = {name: ctx.target.keep(unit.weight.detach().abs().float()) for name, unit in units.items()}
        return SparseResult(masks_by_parameter(units, kept))
