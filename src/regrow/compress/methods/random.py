"""`random`: uniform random scores, the baseline every importance measure must beat."""

import torch

from regrow.compress.masks import Masks
from regrow.compress.methods.base import MethodResult, PruneContext, PruningMethod, register


@register("random")
class RandomPruning(PruningMethod):
    needs_data = False
    streams = True
    scores_experts = True
    summary = "keep units uniformly at random (seeded): the baseline"

    def run(self, ctx: PruneContext) -> MethodResult:
        s = ctx.source
        g = torch.Generator().manual_seed(ctx.cfg.seed)
        L = s.num_hidden_layers
        scores = Masks(
            layer=torch.rand(L, generator=g),
            head=torch.rand(L, s.num_attention_heads, generator=g),
            mlp=torch.rand(L, s.intermediate_size, generator=g),
            hidden=torch.rand(s.hidden_size, generator=g),
        )
        if s.mamba_num_heads:
            scores.mamba_head = torch.rand(L, s.mamba_num_heads, generator=g)
        if s.linear_num_value_heads:
            scores.linear_head = torch.rand(L, s.linear_num_value_heads, generator=g)
        if "conv" in s.layer_kinds:
            scores.conv = torch.rand(L, s.hidden_size, generator=g)
        if s.num_experts:
            scores.expert = torch.rand(L, s.num_experts, generator=g)
            scores.expert_mlp = torch.rand(L, s.num_experts, s.moe_intermediate_size, generator=g)
        if s.shared_expert_intermediate_size:
            scores.shared_mlp = torch.rand(L, s.shared_expert_intermediate_size, generator=g)
        if s.mamba_num_heads:
            scores.mamba_channel = torch.rand(L, s.mamba_head_dim, generator=g)
        if s.kv_lora_rank:
            scores.q_latent = torch.rand(L, s.q_lora_rank, generator=g)
            scores.kv_latent = torch.rand(L, s.kv_lora_rank, generator=g)
        return MethodResult(scores, details={"seed": ctx.cfg.seed})
