"""`depth` (ShortGPT): remove the layers with the lowest block influence 1 - cos(h_in, h_out),
or (`depth_mode: contiguous`) the run of consecutive layers whose input and output are most
alike."""

from __future__ import annotations

import torch

from regrow.compress.masks import Masks
from regrow.compress.methods.activation import calibrate
from regrow.compress.methods.base import (
    MethodResult,
    PruneContext,
    PruningMethod,
    register,
)
from regrow.errors import RegrowError


@register("depth")
class DepthPruning(PruningMethod):
    streams = True
    changes_width = False
    summary = "remove whole layers by block influence (ShortGPT), individually or as one contiguous block"

    def run(self, ctx: PruneContext) -> MethodResult:
        removed = ctx.source.num_hidden_layers - ctx.target.num_hidden_layers
        contiguous = ctx.cfg.depth_mode == "contiguous"
        if contiguous and ctx.target.layers_by_kind:
            raise RegrowError("--depth-mode contiguous removes one run of consecutive layers, which cannot keep the "
                              "target's num_layers_by_kind; drop one of them")
        stats = calibrate(ctx, block_size=removed if contiguous else 0)
        influence = stats.influence / max(stats.tokens, 1)
        details = {"calibration_samples": stats.samples, "calibration_tokens": stats.tokens,
                   "depth_mode": ctx.cfg.depth_mode, "block_influence": influence.tolist()}
        if contiguous and removed > 0:
            runs = stats.block_influence / max(stats.tokens, 1)
            start = int(torch.argmin(runs))
            layer = torch.ones_like(influence)
            layer[start:start + removed] = 0.0
            details.update(run_influence=runs.tolist(), removed_block=[start, start + removed - 1])
        else:
            layer = influence
        return MethodResult(Masks(layer=layer), details=details)
