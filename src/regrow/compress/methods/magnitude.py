"""`magnitude`: keep the units whose weights have the largest L2 norm (a data-free baseline); an
expert's norm is that of its router row and all its weights."""

from regrow.compress.importance import magnitude_of, weight_magnitude
from regrow.compress.methods.base import MethodResult, PruneContext, PruningMethod, register


@register("magnitude")
class MagnitudePruning(PruningMethod):
    needs_data = False
    streams = True
    scores_experts = True
    summary = "keep the units with the largest weight norms (no data)"

    def run(self, ctx: PruneContext) -> MethodResult:
        if ctx.streaming:
            return MethodResult(magnitude_of(ctx.checkpoint.tensors(ctx.parameters), ctx.adapter, ctx.source))
        return MethodResult(weight_magnitude(ctx.model, ctx.adapter))
