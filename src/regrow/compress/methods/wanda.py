"""`wanda` (Sun et al. 2023): score |W_ij| x ||X_j||_2 (X_j: the j-th input feature over all
calibration tokens), the lowest of each output row (or N:M group) zeroed, no weight update.
Layers in order, each calibrated on the outputs of the already-pruned layers before it, as the
released code does."""

import torch

from regrow.compress.methods.base import SparseMethod, register
from regrow.compress.sparsity import LayerByLayer, SparseResult, feed_inputs, sparse_linears


@register("wanda")
class Wanda(SparseMethod):
    summary = "zero the lowest weight magnitude x input-activation norm of each row or N:M group (Wanda)"
    passes = 2  # each layer runs twice: statistics, then its pruned outputs for the next layer

    @torch.no_grad()
    def sparsify(self, ctx) -> SparseResult:
        runner = LayerByLayer(ctx.model, ctx.adapter, ctx.batches, ctx.autocast)
        masks = {}
        for index, linears in sparse_linears(ctx.model, ctx.adapter).items():
            squares = _SumOfSquares()
            feed_inputs(runner, index, linears, squares.add)
            for name, module in linears.items():
                scores = module.weight.abs().double() * squares.sums[name].sqrt()
                kept = ctx.target.keep(scores)
                module.weight.mul_(kept.to(module.weight.dtype))
                masks[f"{name}.weight"] = kept
            runner.advance(index)
        return SparseResult(masks, {"calibration_tokens": sum(ids.numel() for ids in ctx.batches)})


class _SumOfSquares:
    """Per linear layer: the sum over tokens of each input feature squared (||X_j||^2)."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, name: str, x: torch.Tensor) -> None:
        x = x.double()
        self.sums[name] = self.sums.get(name, 0) + (x * x).sum(0)
