"""DeepSeek-V2 (`deepseek_v2`, V2-Lite, DeepSeek-Coder-V2): DeepSeek-V3's multi-head latent
attention and expert layout (families/deepseek_v3.py) with V2's router: a softmax over all
experts, the top-k taken greedily or (`topk_method: group_limited_greedy`) within the
`topk_group` groups whose best expert scores highest, the chosen probabilities times
`routed_scaling_factor`, never renormalised, and no selection bias. Among the kept experts the
masked router's softmax is the sliced router's exactly (a removed expert's logit is -inf), and a
group needs only one kept expert (its score is its best one).
"""

import dataclasses

import torch

from regrow.compress.families.base import FAMILIES, FamilyAdapter
from regrow.compress.families.deepseek_moe import DeepSeekMoeLayout
from regrow.compress.families.deepseek_v3 import DeepseekV3Adapter, LatentAttention


@FAMILIES.register("deepseek_v2")
class DeepseekV2Adapter(LatentAttention, DeepSeekMoeLayout, FamilyAdapter):
    model_types = ("deepseek_v2",)
    layers_path = DeepseekV3Adapter.layers_path
    embedding = DeepseekV3Adapter.embedding
    final_norm = DeepseekV3Adapter.final_norm
    lm_head = DeepseekV3Adapter.lm_head
    roles = dataclasses.replace(DeepseekV3Adapter.roles, router_bias=None)
    min_experts_per_group = 1

    def route(self, config, router, router_args, logits, dropped, top_k, top_groups=None):
        probs = torch.softmax(logits.float().masked_fill(dropped, -torch.inf), dim=-1)
        if config.topk_method == "group_limited_greedy":
            groups = probs.view(-1, config.n_group, probs.shape[-1] // config.n_group)
            best = groups.max(dim=-1).values.topk(top_groups or config.topk_group, dim=-1).indices
            allowed = torch.zeros(groups.shape[:2], dtype=torch.bool, device=probs.device).scatter_(1, best, True)
            probs = probs.masked_fill(~allowed.repeat_interleave(groups.shape[-1], dim=-1), 0.0)
        top, chosen = torch.topk(probs, top_k, dim=-1)
        return top * config.routed_scaling_factor, chosen
