"""Liquid LFM2-MoE (`lfm2_moe`): LFM2's short-convolution and attention layers, with a dense SwiGLU
MLP (`intermediate_size`, taken as it is) in the first `num_dense_layers` layers and a mixture of
experts after them. Its router scores experts with a sigmoid, chooses the top-k of score plus a
per-expert bias (`expert_bias`, a saved buffer: sliced with the experts), renormalises the chosen
scores (plus 1e-6) when `norm_topk_prob` and multiplies them by `routed_scaling_factor`: `route`
does exactly that among the kept experts. Kept dense layers stay first, so the export's
`num_dense_layers` is how many of them are kept.
"""

import torch

from regrow.compress.families.base import FAMILIES, FamilyAdapter, LayerRoles
from regrow.compress.families.lfm2 import Lfm2Adapter
from regrow.compress.shape import ArchShape


@FAMILIES.register("lfm2_moe")
class Lfm2MoeAdapter(Lfm2Adapter):
    model_types = ("lfm2_moe",)
    experts_key = "num_experts"
    roles = LayerRoles(
        q=("self_attn.q_proj",),
        kv=("self_attn.k_proj", "self_attn.v_proj"),
        attn_out="self_attn.out_proj",
        mlp_in=("feed_forward.w1", "feed_forward.w3"),  # the dense layers
        mlp_out="feed_forward.w2",
        norms=("operator_norm", "ffn_norm"),
        writers=("self_attn.out_proj", "conv.out_proj", "feed_forward"),
        head_norms=("self_attn.q_layernorm", "self_attn.k_layernorm"),
        short_conv="conv",
        router="feed_forward.gate",
        router_bias="feed_forward.expert_bias",
        experts="feed_forward.experts",
        moe_block="feed_forward",
    )

    def shape(self, config) -> ArchShape:
        kinds = tuple("conv" if kind == "conv" else "attention" for kind in config.layer_types)
        return FamilyAdapter.shape(self, config).replace(layer_kinds=kinds)

    def moe_layers(self, config) -> list[bool]:
        return [i >= config.num_dense_layers for i in range(config.num_hidden_layers)]

    def layer_overrides(self, config, index: int) -> dict:
        return {**super().layer_overrides(config, index), "num_dense_layers": int(index < config.num_dense_layers)}

    def route(self, config, router, router_args, logits, dropped, top_k, top_groups=None):
        scores = logits.float().sigmoid()
        choice = scores if len(router_args) < 2 or router_args[1] is None else scores + router_args[1].float()
        _, chosen = torch.topk(choice.masked_fill(dropped, -torch.inf), top_k, dim=-1)
        top = scores.gather(-1, chosen)
        if config.norm_topk_prob:
            top = top / (top.sum(dim=-1, keepdim=True) + 1e-6)
        return top * config.routed_scaling_factor, chosen

    def target_config(self, config, target: ArchShape, kept_layers: list[int]):
        new = FamilyAdapter.target_config(self, config, target, kept_layers)
        new.num_dense_layers = sum(old < config.num_dense_layers for old in kept_layers)
        return new
