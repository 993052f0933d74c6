"""Scores -> the deterministic mask of exactly the target shape (shared by every method).

Every layer gets the same widths (homogeneous shapes); which units stay may differ per layer
(and, in a mixture of experts, which channels stay may differ per expert).
Grouped-query attention: the kept key/value groups are the best by summed head score, then
the best query heads within each kept group, so the result is always a legal HF config.
Mamba-2 heads as grouped-query attention: the best groups by summed head score (all of them
unless the target has fewer), then the best heads within each kept group, the same number in each;
a smaller Mamba head size keeps the best channels, the same ones in every head of a layer.
Gated-DeltaNet heads as grouped-query attention: the best key heads by their value heads' summed
score, then the best value heads of each kept key head, the same number for each.
Experts with group-limited routing (DeepSeek-V3, Nemotron-H) likewise: the best groups by summed
expert score, then the best experts within each kept group, the same number in each.
Layers of a hybrid: the best by score, but every kind of layer the source has keeps at least
its best layer (a Granite-4 without attention layers does not run in transformers); a target's
`num_layers_by_kind` fixes how many of a kind stay (its best), the other kinds share the rest.
"""

from __future__ import annotations

import torch

from regrow.compress.masks import Masks
from regrow.compress.shape import ArchShape


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 float mask of the k highest scores along the last dim (ties: lower index wins)."""
    order = torch.argsort(-scores.double(), dim=-1, stable=True)[..., :k]
    mask = torch.zeros_like(scores, dtype=torch.float32)
    return mask.scatter_(-1, order, 1.0)


def grouped_mask(scores: torch.Tensor, groups: int, keep_groups: int, keep_per_group: int) -> torch.Tensor:
    """[L, H] scores of heads in `groups` consecutive groups -> [L, H] 0/1: the best
    `keep_groups` groups by summed score, then the best `keep_per_group` heads within each."""
    layers = scores.shape[0]
    grouped = scores.view(layers, groups, -1)
    kept_groups = top_k_mask(grouped.sum(-1), keep_groups)  # [L, G]
    within = top_k_mask(grouped, keep_per_group)  # [L, G, r]
    return (within * kept_groups.unsqueeze(-1)).view(layers, -1)


def layer_mask(scores: torch.Tensor, keep: int, kinds: tuple[str, ...],
               by_kind: tuple[tuple[str, int], ...] = ()) -> torch.Tensor:
    """[L] scores -> 0/1: the `keep` best layers, swapping the weakest kept layer of a kind kept
    more than once for the best layer of a kind not kept at all. Kinds with a count of their own
    (`by_kind`) keep their best that many; the other kinds share the rest by the same rule."""
    named = dict(by_kind)
    if named:
        mask = torch.zeros_like(scores, dtype=torch.float32)
        for kind, count in named.items():
            mine = torch.tensor([i for i, k in enumerate(kinds) if k == kind])
            mask[mine] = top_k_mask(scores[mine], count)
        rest = [i for i, k in enumerate(kinds) if k not in named]
        if rest:
            index = torch.tensor(rest)
            mask[index] = layer_mask(scores[index], keep - sum(named.values()), tuple(kinds[i] for i in rest))
        return mask
    mask = top_k_mask(scores, keep)
    for kind in dict.fromkeys(kinds):
        mine = [i for i, k in enumerate(kinds) if k == kind]
        if mask[mine].any():
            continue
        spare = [i for i in range(len(kinds)) if mask[i] and sum(mask[j] for j, k in enumerate(kinds) if k == kinds[i]) > 1]
        mask[min(spare, key=lambda i: (scores[i], -i))] = 0
        mask[max(mine, key=lambda i: (scores[i], -i))] = 1
    return mask


def keep_first_layer(mask: torch.Tensor, scores: torch.Tensor, kinds: tuple[str, ...], first_kinds: tuple[str, ...]) -> None:
    """A model that only runs when its first layer holds a cache (Nemotron-H in transformers:
    MLP and MoE layers hold none) keeps the source's first layer when that layer is of such a
    kind, in place of the weakest kept layer of the same kind (each kind's count unchanged)."""
    if not first_kinds or mask[0] or kinds[0] not in first_kinds:
        return
    mine = [i for i, k in enumerate(kinds) if k == kinds[0] and mask[i]]
    mask[min(mine, key=lambda i: (scores[i], -i))] = 0
    mask[0] = 1


def select(scores: Masks, source: ArchShape, target: ArchShape, values: Masks | None = None,
           first_layer_kinds: tuple[str, ...] = ()) -> Masks:
    """Deterministic masks: 1 (or the value to fold, from `values`) for kept units, 0 for dropped.

    A kind of unit whose size does not change gets None (kept whole, nothing to fold).
    `first_layer_kinds`: the kinds of layer the pruned model may start with (keep_first_layer).
    """

    def need(kind: str, tensor: torch.Tensor | None) -> torch.Tensor:
        if tensor is None:
            raise ValueError(f"the method produced no {kind} scores but the target prunes {kind}s")
        return tensor.detach().float().cpu()

    def scaled(keep: torch.Tensor, kind: str) -> torch.Tensor:
        value = getattr(values, kind) if values is not None else None
        return keep if value is None else keep * value.detach().float().cpu()

    out = Masks()
    if target.num_hidden_layers < source.num_hidden_layers:
        layers = layer_mask(need("layer", scores.layer), target.num_hidden_layers, source.layer_kinds,
                            target.layers_by_kind)
        keep_first_layer(layers, need("layer", scores.layer), source.layer_kinds, first_layer_kinds)
        out.layer = scaled(layers, "layer")
    if (target.num_attention_heads, target.num_key_value_heads) != (source.num_attention_heads, source.num_key_value_heads):
        out.head = scaled(grouped_mask(need("head", scores.head), source.num_key_value_heads, target.num_key_value_heads,
                                       target.group_size), "head")
    if target.intermediate_size < source.intermediate_size:
        out.mlp = scaled(top_k_mask(need("mlp", scores.mlp), target.intermediate_size), "mlp")
    if target.hidden_size < source.hidden_size:
        out.hidden = scaled(top_k_mask(need("hidden", scores.hidden), target.hidden_size), "hidden")
        if "conv" in source.layer_kinds:  # a short conv's channels follow the hidden size's count
            out.conv = scaled(top_k_mask(need("conv", scores.conv), target.hidden_size), "conv")
    if target.mamba_num_heads < source.mamba_num_heads:  # fewer heads per group, or fewer (whole) groups
        scores_ = need("mamba_head", scores.mamba_head)
        out.mamba_head = scaled(grouped_mask(scores_, source.mamba_groups, target.mamba_groups,
                                             target.mamba_num_heads // target.mamba_groups), "mamba_head")
    for kind, key in (("q_latent", "q_lora_rank"), ("kv_latent", "kv_lora_rank")):  # a latent's best channels
        if getattr(target, key) < getattr(source, key):
            setattr(out, kind, scaled(top_k_mask(need(kind, getattr(scores, kind)), getattr(target, key)), kind))
    if target.mamba_head_dim < source.mamba_head_dim:  # the same channels of every head
        out.mamba_channel = scaled(top_k_mask(need("mamba_channel", scores.mamba_channel), target.mamba_head_dim),
                                   "mamba_channel")
    if (target.linear_num_key_heads, target.linear_num_value_heads) != (source.linear_num_key_heads,
                                                                         source.linear_num_value_heads):
        out.linear_head = scaled(grouped_mask(need("linear_head", scores.linear_head), source.linear_num_key_heads,
                                              target.linear_num_key_heads, target.linear_group_size), "linear_head")
    if source.n_group and target.num_experts < source.num_experts:  # fewer experts per group, or fewer (whole) groups
        out.expert = scaled(grouped_mask(need("expert", scores.expert), source.n_group, target.n_group,
                                         target.num_experts // target.n_group), "expert")
    for kind, key in (("expert", "num_experts"), ("expert_mlp", "moe_intermediate_size"),
                      ("shared_mlp", "shared_expert_intermediate_size")):
        if kind == "expert" and source.n_group:
            continue
        if getattr(target, key) < getattr(source, key):
            setattr(out, kind, scaled(top_k_mask(need(kind, getattr(scores, kind)), getattr(target, key)), kind))
    if target.num_experts_per_tok < source.num_experts_per_tok:
        out.experts_per_token = target.num_experts_per_tok
    if target.topk_group < source.topk_group:
        out.topk_group = target.topk_group
    return out
