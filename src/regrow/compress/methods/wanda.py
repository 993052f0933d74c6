"""`wanda` (Sun et al. 2023): score |W_ij| x ||X_j||_2 (X_j: the j-th input feature over all
calibration tokens), the lowest of each output row (or N:M group) zeroed, no weight update.
Every linear is calibrated on the outputs of the linears pruned before it, in one forward pass
(compress/sparsity.py `prune_in_call_order`); the released code goes layer by layer, scoring a
layer's linears together on its unpruned inputs and running the layer again once pruned. Each
expert's matrix of a mixture of experts is scored on the tokens routed to it; an expert no
calibration token reached is pruned by magnitude (listed in the report)."""

import torch

from regrow.compress.methods.base import SparseMethod, register
from regrow.compress.sparsity import (
    SparseResult,
    magnitude_where_unreached,
    masks_by_parameter,
    prune_in_call_order,
    sparse_units,
)


@register("wanda")
class Wanda(SparseMethod):
    summary = "zero the lowest weight magnitude x input-activation norm of each row or N:M group (Wanda)"

    def sparsify(self, ctx) -> SparseResult:
        units = {name: unit for layer in sparse_units(ctx.model, ctx.adapter).values() for name, unit in layer.items()}
        masks = {}

        def prune(name, unit, squares):
            kept = ctx.target.keep(unit.weight.abs().float() * squares.sqrt().float())
            unit.weight.mul_(kept.to(unit.weight.dtype))
            masks[name] = kept

        late = prune_in_call_order(ctx.model, ctx.batches, ctx.autocast, units, sum_of_squares, prune)
        unreached = magnitude_where_unreached(units, masks, ctx.target)
        return SparseResult(masks_by_parameter(units, masks),
                            {"calibration_tokens": sum(ids.numel() for ids in ctx.batches),
                             "calls_after_pruning": late, "by_magnitude_without_tokens": unreached})


def sum_of_squares(inputs: list[torch.Tensor]) -> torch.Tensor:
    """||X_j||^2 per input feature over every token (float32 per batch, summed in float64)."""
    return sum(x.float().square().sum(0).double() for x in inputs)
