"""Scores -> the deterministic mask of exactly the target shape (shared by every method).

Every layer gets the same widths (homogeneous shapes); which units stay may differ per layer
(and, in a mixture of experts, which channels stay may differ per expert).
Grouped-query attention: the kept key/value groups are the best by summed head score, then
the best query heads within each kept group, so the result is always a legal HF config.
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


def head_mask(scores: torch.Tensor, source: ArchShape, target: ArchShape) -> torch.Tensor:
    """[L, H] scores -> [L, H] 0/1: target kv groups by group sum, then heads within each group."""
    layers = scores.shape[0]
    grouped = scores.view(layers, source.num_key_value_heads, source.group_size)
    groups = top_k_mask(grouped.sum(-1), target.num_key_value_heads)  # [L, G]
    within = top_k_mask(grouped, target.group_size)  # [L, G, r]
    return (within * groups.unsqueeze(-1)).view(layers, -1)


def select(scores: Masks, source: ArchShape, target: ArchShape, values: Masks | None = None) -> Masks:
    """Deterministic masks: 1 (or the value to fold, from `values`) for kept units, 0 for dropped.

    A kind of unit whose size does not change gets None (kept whole, nothing to fold).
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
        out.layer = scaled(top_k_mask(need("layer", scores.layer), target.num_hidden_layers), "layer")
    if (target.num_attention_heads, target.num_key_value_heads) != (source.num_attention_heads, source.num_key_value_heads):
        out.head = scaled(head_mask(need("head", scores.head), source, target), "head")
    if target.intermediate_size < source.intermediate_size:
        out.mlp = scaled(top_k_mask(need("mlp", scores.mlp), target.intermediate_size), "mlp")
    if target.hidden_size < source.hidden_size:
        out.hidden = scaled(top_k_mask(need("hidden", scores.hidden), target.hidden_size), "hidden")
    for kind, key in (("expert", "num_experts"), ("expert_mlp", "moe_intermediate_size"),
                      ("shared_mlp", "shared_expert_intermediate_size")):
        if getattr(target, key) < getattr(source, key):
            setattr(out, kind, scaled(top_k_mask(need(kind, getattr(scores, kind)), getattr(target, key)), kind))
    if target.num_experts_per_tok < source.num_experts_per_tok:
        out.experts_per_token = target.num_experts_per_tok
    return out
