"""`wanda` (Sun et al. 2023): score |W_ij| x ||X_j||_2 (X_j: the j-th input feature over all
calibration tokens), the lowest of each output row (or N:M group) zeroed, no weight update.
Every linear is calibrated on the outputs of the linears pruned before it, in one forward pass
(compress/sparsity.py `prune_in_call_order`); the released code goes layer by layer, scoring a
layer's linears together on its unpruned inputs and running the layer again once pruned."""

import torch

from regrow.compress.methods.base import SparseMethod, register
from regrow.compress.sparsity import SparseResult, prune_in_call_order, sparse_linears


@register("wanda")
class Wanda(SparseMethod):
    summary = "zero the lowest weight magnitude x input-activation norm of each row or N:M group (Wanda)"

    def sparsify(self, ctx) -> SparseResult:
        linears = {name: module for layer in sparse_linears(ctx.model, ctx.adapter).values()
                   for name, module in layer.items()}
        masks = {}

        def prune(name, module, squares):
            kept = ctx.target.keep(module.weight.abs().float() * squares.sqrt().float())
            module.weight.mul_(kept.to(module.weight.dtype))
            masks[f"{name}.weight"] = kept

        late = prune_in_call_order(ctx.model, ctx.batches, ctx.autocast, linears, sum_of_squares, prune)
        return SparseResult(masks, {"calibration_tokens": sum(ids.numel() for ids in ctx.batches),
                                    "calls_after_pruning": late})


def sum_of_squares(inputs: list[torch.Tensor]) -> torch.Tensor:
    """||X_j||^2 per input feature over every token (float32 per batch, summed in float64)."""
    return sum(x.float().square().sum(0).double() for x in inputs)
