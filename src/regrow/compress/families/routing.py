"""Group-limited sigmoid routing (DeepSeek-V3 and the families that copied its router: Nemotron-H
MoE, GLM-4-MoE): the router scores every expert with a sigmoid, adds a per-expert selection bias
(`e_score_correction_bias`, a saved buffer: sliced with the experts), scores each of `n_group`
equal groups by the sum of its best two biased scores, keeps the best `topk_group` groups and
chooses the top-k experts by biased score inside them; the gates are the unbiased scores of the
chosen, renormalised (plus 1e-20) when `norm_topk_prob`, times `routed_scaling_factor`.

A removed expert's scores are -inf before both choices, so a group left with no expert is never
chosen and a group's best two are among its kept experts: what the sliced router (fewer experts
per group, or fewer groups) computes, provided every kept group keeps at least two experts
(shape.check_expert_groups).
"""

import torch


class GroupLimitedRouting:
    """Mixed in before FamilyAdapter; the router module holds `e_score_correction_bias`."""

    def route(self, config, router, router_args, logits, dropped, top_k, top_groups=None):
        scores = logits.float().sigmoid()
        choice = (scores + router.e_score_correction_bias.float()).masked_fill(dropped, -torch.inf)
        groups = choice.view(-1, config.n_group, choice.shape[-1] // config.n_group)
        group_scores = groups.topk(2, dim=-1).values.sum(-1)
        best = group_scores.topk(top_groups or config.topk_group, dim=-1).indices
        allowed = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, best, True)
        choice = choice.masked_fill(~allowed.repeat_interleave(groups.shape[-1], dim=-1), -torch.inf)
        chosen = choice.topk(top_k, dim=-1).indices
        top = scores.gather(-1, chosen)
        if config.norm_topk_prob:
            top = top / (top.sum(dim=-1, keepdim=True) + 1e-20)
        return top * config.routed_scaling_factor, chosen
