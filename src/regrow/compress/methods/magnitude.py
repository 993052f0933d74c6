"""`magnitude`: keep the units whose weights have the largest L2 norm (a data-free baseline)."""

from regrow.compress.importance import weight_magnitude
from regrow.compress.methods.base import MethodResult, PruneContext, PruningMethod, register


@register("magnitude")
class MagnitudePruning(PruningMethod):
    needs_data = False
    summary = "keep the units with the largest weight norms (no data)"

    def run(self, ctx: PruneContext) -> MethodResult:
        return MethodResult(weight_magnitude(ctx.model, ctx.adapter))
