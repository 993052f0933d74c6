"""`activation` (Minitron): one-shot activation importance of heads, MLP channels and hidden
channels from calibration forwards; block influence for layers when layers must go. All
scores come from one pass over the unpruned model."""

from __future__ import annotations

import torch
from tqdm import tqdm

from regrow.compress.importance import ActivationStats
from regrow.compress.methods.base import MethodResult, PruneContext, PruningMethod, register


def calibrate(ctx: PruneContext, block_size: int = 0) -> ActivationStats:
    """Forward the calibration batches through the model with the statistics hooks attached."""
    stats = ActivationStats(ctx.model, ctx.adapter, ctx.cfg.batch_reduction, block_size)
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        with torch.inference_mode(), ctx.autocast():
            for inputs in tqdm(ctx.calibration(), total=ctx.calibration_batches, desc="calibrate", unit="batch",
                               disable=not ctx.cfg.progress, dynamic_ncols=True):
                ctx.model.base_model(input_ids=inputs, use_cache=False)  # no LM head: logits are not needed
    finally:
        stats.remove()
        ctx.model.train(was_training)
    return stats


@register("activation")
class ActivationPruning(PruningMethod):
    summary = "one-shot activation importance from calibration data (Minitron); depth by block influence"

    def run(self, ctx: PruneContext) -> MethodResult:
        stats = calibrate(ctx)
        details = {"calibration_samples": stats.samples, "calibration_tokens": stats.tokens,
                   "batch_reduction": ctx.cfg.batch_reduction}
        return MethodResult(stats.scores(), details=details)
