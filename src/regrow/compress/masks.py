"""Masks over a model's prunable units, applied to the unmodified HF model with forward hooks.

Semantics (Sheared-LLaMA, docs/ALGORITHMS.md §1): the layer gate scales what a layer writes into the
residual stream; head masks scale each head's context before the output projection; MLP masks
scale the intermediate activation before the down projection; the hidden mask scales the
embeddings, every write into the residual stream and every norm output, and norms then average
over the kept hidden dimensions only. A zero entry removes the unit: slicing the model with
the same (deterministic) masks gives the same logits.

Mixtures of experts (docs/ALGORITHMS.md §9): an expert whose mask is 0 is taken out of routing (its
router logit is -inf before the top-k, so the token's slot goes to the next expert, and the
chosen gates are renormalised as the family does: exactly what the sliced router with fewer
rows computes); a kept expert's mask value scales its gate (its output); expert-channel masks
scale each expert's intermediate activations (compress/experts.py); `experts_per_token` is the
target top-k. During sheared mask training an expert is routed while its sampled gate is above 0.

Gated-DeltaNet value heads (hybrids): a head's mask scales its channels at the output projection's
input; its gated norm is per head, and a key head whose value heads are all masked contributes
nothing, so the sliced mixer (fewer heads) computes the same.

Mamba-2 heads (hybrids, docs/ALGORITHMS.md §14): a head's mask scales its channels at the input
of the mixer's out_proj, and the gated RMSNorm before it takes each group's statistics over the
kept heads' channels only, which is what the sliced mixer (fewer heads per group) computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from regrow.compress.experts import RoutedExperts, find, find_mamba
from regrow.compress.families.base import FamilyAdapter


@dataclass
class Masks:
    """One value per unit; None = that kind of unit is not pruned (all ones).

    layer [L], head [L, H] (query heads), mlp [L, m], hidden [d]; mixtures of experts: expert
    [L, E], expert_mlp [L, E, m_e] (each expert's channels), shared_mlp [L, m_s] (the shared
    expert's channels) and experts_per_token (the top-k, None = the model's own); hybrids:
    mamba_head [L, H_m], mamba_channel [L, P] (the same channels of every Mamba head), conv [L, d] (a short conv's channels) and linear_head [L, H_v] (a gated
    DeltaNet's value heads): a row for every layer, only the layers with that mixer use theirs.
    Latent attention: q_latent [L, r_q], kv_latent [L, r_kv] (the latents' channels).
    Group-limited routing: topk_group (the groups a token may use, None = the model's own).
    """

    layer: torch.Tensor | None = None
    head: torch.Tensor | None = None
    mlp: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    expert: torch.Tensor | None = None
    expert_mlp: torch.Tensor | None = None
    shared_mlp: torch.Tensor | None = None
    mamba_head: torch.Tensor | None = None
    mamba_channel: torch.Tensor | None = None
    conv: torch.Tensor | None = None
    linear_head: torch.Tensor | None = None
    q_latent: torch.Tensor | None = None
    kv_latent: torch.Tensor | None = None
    experts_per_token: int | None = None
    topk_group: int | None = None  # group-limited routing: the target's groups per token (None = the model's)

    def for_layer(self, index: int) -> Masks:
        """The masks of layer `index` alone, as for a one-layer model (layer-by-layer checks)."""
        def row(t):
            return None if t is None else t[index : index + 1]

        return Masks(layer=row(self.layer), head=row(self.head), mlp=row(self.mlp), hidden=self.hidden,
                     expert=row(self.expert), expert_mlp=row(self.expert_mlp), shared_mlp=row(self.shared_mlp),
                     mamba_head=row(self.mamba_head), mamba_channel=row(self.mamba_channel), conv=row(self.conv),
                     linear_head=row(self.linear_head), q_latent=row(self.q_latent), kv_latent=row(self.kv_latent),
                     experts_per_token=self.experts_per_token, topk_group=self.topk_group)

    def kv_keep(self, index: int, kv_heads: int) -> torch.Tensor | None:
        """Which key/value heads of layer `index` serve at least one kept query head."""
        return None if self.head is None else served(self.head[index], kv_heads)

    def mamba_group_keep(self, index: int, groups: int) -> torch.Tensor | None:
        """Which Mamba groups (their B and C) of layer `index` serve at least one kept head."""
        return None if self.mamba_head is None else served(self.mamba_head[index], groups)

    def linear_key_keep(self, index: int, key_heads: int) -> torch.Tensor | None:
        """Which gated-DeltaNet key heads of layer `index` serve at least one kept value head."""
        return None if self.linear_head is None else served(self.linear_head[index], key_heads)


def served(values: torch.Tensor, groups: int) -> torch.Tensor:
    """Which of `groups` shared heads serve a kept head (heads in consecutive groups)."""
    return values.view(groups, -1).ne(0).any(dim=-1)


def masked_norm(module: nn.Module, x: torch.Tensor, keep: torch.Tensor, offset: float = 0.0) -> torch.Tensor:
    """The module's RMSNorm / LayerNorm computed over the kept last-dim entries only; an RMSNorm
    gain is (offset + weight) (Gemma: 1 + weight, in float32 as Gemma computes it)."""
    k = keep.to(x.device, torch.float32)
    n = k.sum()
    xf = x.float()
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if isinstance(module, nn.LayerNorm) or hasattr(module, "normalized_shape"):  # LayerNorm, with or without affine
        mean = (xf * k).sum(-1, keepdim=True) / n
        centred = (xf - mean) * k
        var = (centred * centred).sum(-1, keepdim=True) / n
        y = (centred * torch.rsqrt(var + getattr(module, "eps", 1e-5))).to(x.dtype)
        if weight is not None:
            y = y * weight
        if bias is not None:
            y = y + bias
        return y
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", 1e-6))
    var = (xf * xf * k).sum(-1, keepdim=True) / n
    y = xf * torch.rsqrt(var + eps) * k
    if weight is None:
        return y.to(x.dtype)
    return (y * (offset + weight.float())).to(x.dtype) if offset else (y * weight).to(x.dtype)


def masked_gated_norm(module: nn.Module, x: torch.Tensor, gate: torch.Tensor | None, keep: torch.Tensor,
                      groups: int) -> torch.Tensor:
    """A Mamba-2 gated RMSNorm (x times silu(gate), normalised per group of channels, times the
    gain; Falcon-H1 may normalise before the gate: `norm_before_gate`) with each group's mean
    square taken over its kept channels only, the dropped channels zero."""
    before_gate = getattr(module, "norm_before_gate", False)
    h = x.float()
    if gate is not None and not before_gate:
        h = h * nn.functional.silu(gate.float())
    k = keep.to(h.device, torch.float32).view(groups, -1)
    grouped = h.view(*h.shape[:-1], groups, k.shape[-1])
    variance = (grouped * grouped * k).sum(-1, keepdim=True) / k.sum(-1, keepdim=True).clamp_min(1)  # a dropped group: 0
    normed = (grouped * torch.rsqrt(variance + module.variance_epsilon) * k).view(h.shape)
    if before_gate:  # Falcon-H1 scales in float32 and casts last
        out = module.weight.float() * normed
        return (out * nn.functional.silu(gate.float()) if gate is not None else out).to(x.dtype)
    return module.weight * normed.to(x.dtype)


def _times(x: torch.Tensor, *factors: torch.Tensor | None) -> torch.Tensor:
    for f in factors:
        if f is not None:
            x = x * f.to(x.device, x.dtype)
    return x


class MaskHooks:
    """Attach to a model; set `.masks` before each forward (None = unmasked). `final` marks a
    deterministic mask (families may then switch to the pruned model's behaviour, e.g. ALiBi)."""

    def __init__(self, model: nn.Module, adapter: FamilyAdapter):
        self.model, self.adapter = model, adapter
        self.masks: Masks | None = None
        self.final = False
        config = model.config
        shape = adapter.shape(config)
        self.head_dim, self.kv_heads = shape.head_dim, shape.num_key_value_heads
        self.mamba_head_dim, self.mamba_groups = shape.mamba_head_dim, shape.mamba_groups
        self.mamba_heads = shape.mamba_num_heads
        self.linear_value_head_dim = shape.linear_value_head_dim
        self.handles: list = []
        self.routed: list[RoutedExperts] = []
        for index, layer in enumerate(adapter.layers(model)):
            kind = adapter.layer_kind(shape, index)
            r = adapter.roles_of(kind)
            get = layer.get_submodule
            if (attn_out := find(layer, r.attn_out)) is not None:  # a hybrid's Mamba layers have no attention
                self.handles.append(attn_out.register_forward_pre_hook(self._input_scale_hook(index, "head", shape.head_out_dim)))
            if r.mla:  # a latent's norm over its kept channels, its mask values at the up-projection's input
                for norm, up, unit in (("q_a_layernorm", "q_b_proj", "q_latent"), ("kv_a_layernorm", "kv_b_proj", "kv_latent")):
                    if getattr(get(r.mla), norm, None) is not None:
                        self.handles.append(get(f"{r.mla}.{norm}").register_forward_hook(self._latent_norm_hook(index, unit)))
                        self.handles.append(get(f"{r.mla}.{up}").register_forward_pre_hook(self._input_scale_hook(index, unit, 1)))
            if (mamba := find_mamba(layer, r.mamba)) is not None:
                self.handles.append(mamba.out_proj.register_forward_pre_hook(self._mamba_out_hook(index)))
                if hasattr(mamba.norm, "weight"):  # Falcon-H1 may have no norm there (nn.Identity)
                    self.handles.append(mamba.norm.register_forward_hook(self._mamba_norm_hook(index), with_kwargs=True))
            conv_out = f"{r.short_conv}.out_proj" if r.short_conv else None
            for name, unit, repeat in ((r.mlp_out, "mlp", 1), (r.shared_out, "shared_mlp", 1), (conv_out, "conv", 1),
                                       (r.deltanet_out, "linear_head", self.linear_value_head_dim)):
                if (module := find(layer, name)) is not None:
                    self.handles.append(module.register_forward_pre_hook(self._input_scale_hook(index, unit, repeat)))
            for name in r.norms:
                self.handles.append(get(name).register_forward_hook(self._norm_hook(None)))
            for name in r.writers:
                if (module := find(layer, name)) is not None:
                    hook = self._norm_hook(index) if name in adapter.norm_writers(kind) else self._output_writer_hook(index)
                    self.handles.append(module.register_forward_hook(hook))
            if r.q_norm:
                self.handles.append(get(r.q_norm).register_forward_hook(self._head_norm_hook(index, "head")))
            if r.k_norm:
                self.handles.append(get(r.k_norm).register_forward_hook(self._head_norm_hook(index, "kv")))
            if (router := find(layer, r.router)) is not None:
                self.handles.append(router.register_forward_hook(self._router_hook(index, config)))
                self.routed.append(RoutedExperts(get(r.experts), self._expert_channels(index)))
        self.handles.append(model.get_submodule(adapter.embedding).register_forward_hook(self._embedding_hook))
        for name in (adapter.embedding_norm, adapter.final_norm):
            if name:
                self.handles.append(model.get_submodule(name).register_forward_hook(self._norm_hook(None)))
        self.handles += adapter.extra_mask_hooks(model, self)

    def remove(self) -> None:
        for handle in self.handles + self.routed:
            handle.remove()
        self.handles, self.routed = [], []

    # ---- hooks ------------------------------------------------------------------------------------
    def _input_scale_hook(self, index: int, kind: str, repeat: int):
        """Scale a module's input by the layer's `kind` mask (each value repeated `repeat` times)."""

        def hook(module, args):
            values = getattr(self.masks, kind) if self.masks is not None else None
            if values is None:
                return None
            (x, *rest) = args
            return (_times(x, values[index].repeat_interleave(repeat)), *rest)

        return hook

    def _norm_hook(self, index: int | None):
        """A norm over hidden: average over kept dims, scale by the hidden mask (and the layer
        gate when the norm writes into the residual stream)."""

        def hook(module, args, output):
            m = self.masks
            if m is None:
                return None
            gate = m.layer[index] if (index is not None and m.layer is not None) else None
            if m.hidden is None:
                return None if gate is None else _times(output, gate)
            return _times(masked_norm(module, args[0], m.hidden.ne(0), self.adapter.norm_offset), m.hidden, gate)

        return hook

    def _output_writer_hook(self, index: int):
        """A module whose output is added to the residual stream: scale it by the layer gate and
        the hidden mask."""

        def hook(module, args, output):
            m = self.masks
            if m is None:
                return None
            gate = m.layer[index] if m.layer is not None else None
            if gate is None and m.hidden is None:
                return None
            if isinstance(output, tuple):  # gpt-oss's MLP returns (output, router scores)
                return (_times(output[0], gate, m.hidden), *output[1:])
            return _times(output, gate, m.hidden)

        return hook

    def _router_hook(self, index: int, config):
        """Route among the kept experts only, top-k of the target, as the family routes (its
        adapter's `route`), then scale the gates by the kept experts' mask values."""

        def hook(module, args, output):
            m = self.masks
            if m is None or (m.expert is None and m.experts_per_token is None and m.topk_group is None):
                return None
            logits, scores = output[0], output[1]
            values = m.expert[index].to(logits.device) if m.expert is not None else None
            dropped = values == 0 if values is not None else torch.zeros(logits.shape[-1], dtype=torch.bool,
                                                                          device=logits.device)
            top, chosen = self.adapter.route(config, module, args, logits, dropped, m.experts_per_token or module.top_k,
                                             m.topk_group)
            top = top.to(scores.dtype)
            if values is not None:
                top = top * values.to(top.dtype)[chosen]
            return logits, top, chosen

        return hook

    def _expert_channels(self, index: int):
        def channels():
            m = self.masks
            return None if m is None or m.expert_mlp is None else m.expert_mlp[index]

        return channels

    def _head_norm_hook(self, index: int, unit: str):
        def hook(module, args, output):
            m = self.masks
            if m is None or m.head is None:
                return None
            keep = m.head[index].ne(0) if unit == "head" else m.kv_keep(index, self.kv_heads)
            return masked_norm(module, args[0], keep.repeat_interleave(self.head_dim), self.adapter.norm_offset)

        return hook

    def _mamba_norm_hook(self, index: int):
        """The gated RMSNorm of a Mamba-2 mixer over the kept heads' channels of each group (the
        heads' mask values are applied at out_proj's input, where they fold)."""

        def hook(module, args, kwargs, output):
            m = self.masks
            if m is None or (m.mamba_head is None and m.mamba_channel is None):
                return None
            keep = self._mamba_channels(index).ne(0)
            gate = args[1] if len(args) > 1 else kwargs.get("gate")
            return masked_gated_norm(module, args[0], gate, keep, self.mamba_groups)

        return hook

    def _latent_norm_hook(self, index: int, unit: str):
        """An attention latent's RMSNorm over its kept channels only (the dropped ones zero)."""

        def hook(module, args, output):
            values = getattr(self.masks, unit) if self.masks is not None else None
            if values is None:
                return None
            return masked_norm(module, args[0], values[index].ne(0), self.adapter.norm_offset)

        return hook

    def _mamba_channels(self, index: int) -> torch.Tensor:
        """[heads x head_dim] mask values of a Mamba layer's channels: head value x channel value."""
        m = self.masks
        heads = m.mamba_head[index] if m.mamba_head is not None else torch.ones(self.mamba_heads)
        channels = m.mamba_channel[index] if m.mamba_channel is not None else torch.ones(self.mamba_head_dim)
        return (heads.view(-1, 1) * channels.to(heads.device).view(1, -1)).flatten()

    def _mamba_out_hook(self, index: int):
        """Scale out_proj's input by the Mamba heads' and their channels' mask values."""

        def hook(module, args):
            m = self.masks
            if m is None or (m.mamba_head is None and m.mamba_channel is None):
                return None
            (x, *rest) = args
            return (_times(x, self._mamba_channels(index)), *rest)

        return hook

    def _embedding_hook(self, module, args, output):
        m = self.masks
        if m is None or m.hidden is None:
            return None
        return _times(output, m.hidden)
