"""Re-initialisation after pruning (docs/ALGORITHMS.md §5), chosen with `--reinit`.

- none: keep the pruned weights.
- shrink-perturb (Ash & Adams 2020): theta <- lambda * theta + sigma * eps for every parameter,
  eps = the parameter of a freshly initialised model of the same shape (HF's own init, so
  matrices get the family's init distribution, norm gains 1 and biases 0).
- fire: every weight matrix inside the decoder layers is replaced by its Newton-Schulz
  orthogonalisation (5 steps of X <- 1.5 X - 0.5 X X^T X from X = W / ||W||_F) scaled by
  sqrt(d_out / d_in); query, key and value separately, also when the family fuses them; in a
  mixture of experts the router and each expert's gate, up and down matrices on their own.
  Embeddings, LM head, norms and biases are kept.
- random: a freshly initialised model of the pruned shape: the from-scratch control.
- rewind (lottery-ticket rewinding, Frankle et al.): the kept units (or weights) of an earlier
  snapshot of the same run (`--rewind-from`), loaded in place of the trained weights before
  slicing or masking (compress/rewind.py), so the mask found on the trained model is applied
  to the early weights.
The pruned folder holds no optimizer state, so training always starts with a fresh optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from regrow.compress.experts import expert_weight, find, fused_names, gate_and_up
from regrow.compress.families.base import FamilyAdapter
from regrow.models.hf import fresh_like
from regrow.registry import Registry

REINITS: Registry[Callable] = Registry("reinit")
register = REINITS.register


@register("none")
def keep(model: nn.Module, adapter: FamilyAdapter, seed: int, shrink: float, perturb: float) -> nn.Module:
    """keep the pruned weights as they are"""
    return model


@torch.no_grad()
def blend_with_fresh_init(model: nn.Module, seed: int, keep: float, fresh: float) -> nn.Module:
    """theta <- keep * theta + fresh * theta_init, theta_init from HF's init of the same config."""
    init = dict(fresh_like(model, seed).named_parameters())
    for name, param in model.named_parameters():
        param.mul_(keep).add_(init[name], alpha=fresh)
    return model


@register("shrink-perturb")
def shrink_perturb(model: nn.Module, adapter: FamilyAdapter, seed: int, shrink: float, perturb: float) -> nn.Module:
    """shrink x weights + perturb x a fresh init (Ash & Adams)"""
    return blend_with_fresh_init(model, seed, shrink, perturb)


def newton_schulz(weight: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately orthogonalise a matrix, then scale to preserve sqrt(d_out / d_in) gain."""
    x = weight.double()
    x = x / x.norm().clamp_min(1e-12)
    for _ in range(steps):
        x = 1.5 * x - 0.5 * x @ (x.T @ x)
    d_out, d_in = weight.shape
    return (x * math.sqrt(d_out / d_in)).to(weight.dtype)


@register("fire")
@torch.no_grad()
def fire(model: nn.Module, adapter: FamilyAdapter, seed: int, shrink: float, perturb: float) -> nn.Module:
    """orthogonalise every projection by Newton-Schulz, gain kept (FIRE)"""
    shape = adapter.shape(model.config)
    head_dim = shape.head_dim
    for index, layer in enumerate(adapter.layers(model)):
        r = adapter.roles_of(adapter.layer_kind(shape, index))
        plain = (*r.q, *r.kv, r.attn_out, *r.mlp_in, r.mlp_out, *r.shared_in, r.shared_out, r.router, r.latent_in,
                 r.latent_out)
        for module in (m for m in (find(layer, name) for name in plain) if hasattr(m, "weight")):
            module.weight.copy_(newton_schulz(module.weight))
        if r.qkv_fused:
            weight = layer.get_submodule(r.qkv_fused).weight  # rows: [head, q|k|v, head_dim]
            parts = weight.view(-1, 3, head_dim, weight.shape[1])
            for p in range(3):
                part = parts[:, p].reshape(-1, weight.shape[1])
                parts[:, p] = newton_schulz(part).view_as(parts[:, p])
        if (experts := find(layer, r.experts)) is not None:  # each expert's gate, up and down on their own
            for name in fused_names(experts):
                for e in range(getattr(experts, name).shape[0]):
                    pieces = gate_and_up(experts, e) if name == "gate_up_proj" else (expert_weight(experts, name, e),)
                    for piece in pieces:
                        piece.copy_(newton_schulz(piece))
    return model


@register("random")
def random_init(model: nn.Module, adapter: FamilyAdapter, seed: int, shrink: float, perturb: float) -> nn.Module:
    """a fresh init of the pruned shape (keeps only the architecture)"""
    return blend_with_fresh_init(model, seed, 0.0, 1.0)


@register("rewind")
def rewind(model: nn.Module, adapter: FamilyAdapter, seed: int, shrink: float, perturb: float) -> nn.Module:
    """the kept weights of an earlier snapshot (--rewind-from): lottery-ticket rewinding"""
    return model  # the snapshot's weights were put in before slicing (compress/rewind.py)


rewind.needs_snapshot = True
