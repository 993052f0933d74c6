"""`activation` (Minitron): one-shot activation importance of heads, MLP channels and hidden
channels from calibration forwards; block influence for layers when layers must go; in a
mixture of experts each expert's channels over the tokens routed to it and the experts
themselves by `expert_criterion` (REAP, frequency or random). All scores come from one pass over
the unpruned model."""

from __future__ import annotations

import torch
from tqdm import tqdm

from regrow.compress.importance import ActivationStats, hidden_of
from regrow.compress.methods.base import MethodResult, PruneContext, PruningMethod, register


def calibrate(ctx: PruneContext, block_size: int = 0) -> ActivationStats:
    """Forward the calibration batches through the model with the statistics hooks attached."""
    if ctx.streaming:
        return calibrate_layerwise(ctx, block_size)
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


def calibrate_layerwise(ctx: PruneContext, block_size: int = 0) -> ActivationStats:
    """The same statistics, one layer at a time: every batch's hidden states go through layer i
    before layer i+1 is read. Runs of `block_size` layers keep that many earlier states."""
    stats = ActivationStats.for_shape(ctx.source, ctx.adapter, ctx.cfg.batch_reduction, block_size)
    runner = ctx.layerwise
    batches = list(ctx.calibration())
    store, inputs = runner.embed(batches, 2 + block_size, ctx.autocast)
    for ids in batches:
        stats.count(ids)
    window = [store]  # hidden states entering the last block_size + 1 layers
    current = [0]
    handles = [handle for key, layer in runner.layers.items()
               for handle in stats.hook_units(layer, lambda: current[0], runner.layer_kinds[key])]
    try:
        for i in tqdm(range(runner.num_layers), desc="calibrate layers", unit="layer", disable=not ctx.cfg.progress,
                      dynamic_ncols=True):
            current[0] = i
            layer = runner.load_layer(i)
            out_store = runner.new_store(len(batches), tuple(window[-1].get(0).shape), 2 + block_size)
            with torch.inference_mode(), ctx.autocast():
                for b in range(len(batches)):
                    h = window[-1].get(b).to(ctx.device)
                    out = hidden_of(inputs.run(layer, i, h))
                    stats.add_influence(i, h, out)
                    out_store.put(b, out)
            window.append(out_store)
            if block_size and len(window) == block_size + 1:
                for b in range(len(batches)):
                    stats.add_block_influence(i + 1 - block_size, window[0].get(b), window[-1].get(b))
            if len(window) > block_size:
                window.pop(0).drop()
    finally:
        for handle in handles:
            handle.remove()
        for item in window:
            item.drop()
    return stats


@register("activation")
class ActivationPruning(PruningMethod):
    streams = True
    scores_experts = True
    uses_expert_criterion = True
    summary = "one-shot activation importance from calibration data (Minitron); experts by REAP, frequency or random"

    def run(self, ctx: PruneContext) -> MethodResult:
        stats = calibrate(ctx)
        details = {"calibration_samples": stats.samples, "calibration_tokens": stats.tokens,
                   "batch_reduction": ctx.cfg.batch_reduction}
        if ctx.source.num_experts:
            details.update(expert_criterion=ctx.cfg.expert_criterion,
                           routed_tokens=[[int(n) for n in row] for row in stats.routed])
        return MethodResult(stats.scores(ctx.cfg.expert_criterion, ctx.cfg.seed), details=details)
