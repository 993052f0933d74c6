"""A toy compression method in one file: keep the first units of every kind (no data)."""

import torch

from regrow.compress.masks import Masks
from regrow.compress.methods import METHODS, MethodResult, PruningMethod


@METHODS.register("toy-first")
class KeepFirst(PruningMethod):
    summary = "keep the first units of every kind (a test's toy)"
    needs_data = False
    streams = True

    def run(self, ctx) -> MethodResult:
        s = ctx.source
        L = s.num_hidden_layers
        scores = Masks(layer=-torch.arange(L, dtype=torch.float32),
                       head=-torch.arange(s.num_attention_heads, dtype=torch.float32).repeat(L, 1),
                       mlp=-torch.arange(s.intermediate_size, dtype=torch.float32).repeat(L, 1),
                       hidden=-torch.arange(s.hidden_size, dtype=torch.float32))
        return MethodResult(scores)
