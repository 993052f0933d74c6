"""Fold the deterministic mask into the weights and slice out the kept units -> a plain HF model.

The new model is built from the target config (so layer indices, the KV cache and every
size attribute are HF's own) and receives the sliced tensors; nothing of regrow stays in it.
"""

from __future__ import annotations

import torch
from torch import nn

from regrow.compress.families.base import Axis, FamilyAdapter
from regrow.compress.masks import Masks
from regrow.compress.shape import ArchShape


def element_index(units: torch.Tensor, block: int, inner: torch.Tensor | None = None) -> torch.Tensor:
    """Kept units -> kept tensor rows/columns when every unit spans `block` consecutive entries
    (of which the `inner` ones are kept, if given)."""
    offsets = torch.arange(block) if inner is None else inner
    return (units.view(-1, 1) * block + offsets).flatten()


class KeptUnits:
    """Kept indices and fold values of every unit, per source layer."""

    def __init__(self, masks: Masks, source: ArchShape):
        self.masks, self.source = masks, source
        L = source.num_hidden_layers
        self.layers = list(range(L)) if masks.layer is None else torch.nonzero(masks.layer).flatten().tolist()
        self.hidden = self._kept(masks.hidden, source.hidden_size)

    @staticmethod
    def _kept(values: torch.Tensor | None, size: int) -> torch.Tensor:
        return torch.arange(size) if values is None else torch.nonzero(values).flatten()

    def units(self, unit: str, layer: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(kept indices, their mask values or None) of a unit kind in a layer."""
        m, s = self.masks, self.source
        if unit == "hidden":
            return self.hidden, None if m.hidden is None else m.hidden[self.hidden]
        if unit == "head":
            kept = self._kept(None if m.head is None else m.head[layer], s.num_attention_heads)
            return kept, None if m.head is None else m.head[layer][kept]
        if unit == "kv":
            keep = m.kv_keep(layer, s.num_key_value_heads)
            return (torch.arange(s.num_key_value_heads) if keep is None else torch.nonzero(keep).flatten()), None
        if unit == "linear_key":
            keep = m.linear_key_keep(layer, s.linear_num_key_heads)
            return (torch.arange(s.linear_num_key_heads) if keep is None else torch.nonzero(keep).flatten()), None
        if unit == "mamba_group":  # a Mamba group's B and C channels: kept while one of its heads is
            keep = m.mamba_group_keep(layer, s.mamba_groups)
            return (torch.arange(s.mamba_groups) if keep is None else torch.nonzero(keep).flatten()), None
        if unit == "rope_key":  # MLA's shared rope key: always kept
            return torch.arange(1), None
        if unit in ("mlp", "shared_mlp", "expert", "mamba_head", "mamba_channel", "conv", "linear_head", "q_latent",
                    "kv_latent"):
            values = {"mlp": m.mlp, "shared_mlp": m.shared_mlp, "expert": m.expert, "mamba_head": m.mamba_head,
                      "mamba_channel": m.mamba_channel, "conv": m.conv, "linear_head": m.linear_head,
                      "q_latent": m.q_latent, "kv_latent": m.kv_latent}[unit]
            kept = self._kept(None if values is None else values[layer], s.units(unit))
            return kept, None if values is None else values[layer][kept]
        if unit == "expert_mlp":  # per kept expert its own channels: [kept experts, kept channels]
            if m.expert_mlp is None:
                return torch.arange(s.moe_intermediate_size), None  # the same for every expert
            experts = self.units("expert", layer)[0]
            rows = m.expert_mlp[layer][experts]
            kept = torch.nonzero(rows)[:, 1].view(len(experts), -1)
            return kept, rows.gather(1, kept)
        raise ValueError(unit)

    def units_in(self, unit: str, layer: int | None, first: int, count: int) -> torch.Tensor:
        """The kept units of a kind among [first, first + count), numbered from `first`."""
        kept = self.units(unit, layer)[0]
        if first == 0 and count == self.source.units(unit):
            return kept  # the whole range (per-expert channels stay [experts, n])
        inside = kept[(kept >= first) & (kept < first + count)]
        return inside - first

    def gate(self, layer: int) -> float:
        return 1.0 if self.masks.layer is None else float(self.masks.layer[layer])


def select_units(tensor: torch.Tensor, dim: int, units: torch.Tensor, block: int,
                 inner: torch.Tensor | None = None) -> torch.Tensor:
    """The kept entries along `dim`: the same for every slice (units [n]; of each unit's block the
    `inner` entries, if given), or per expert (units [experts, n]: dim 0 is the expert axis,
    already cut to the kept experts)."""
    if units.dim() == 1:
        if len(units) * (block if inner is None else len(inner)) == tensor.shape[dim]:  # all kept: no copy
            return tensor
        return tensor.index_select(dim, element_index(units, block, inner).to(tensor.device))
    index = (units.unsqueeze(-1) * block + torch.arange(block)).flatten(1).to(tensor.device)  # [experts, n x block]
    shape = [1] * tensor.dim()
    shape[0], shape[dim] = index.shape
    size = list(tensor.shape)
    size[dim] = index.shape[1]
    return tensor.gather(dim, index.view(shape).expand(size))


def prune_tensor(tensor: torch.Tensor, axes: tuple[Axis, ...], kept: KeptUnits, layer: int | None, fold: bool) -> torch.Tensor:
    out = tensor.detach()
    for axis in axes:
        if axis.stacked:  # a fused projection: slice each unit range on its own
            segments = axis.segments(kept.source)
            pieces = out.split([count * block for _, block, _, count, _ in segments], axis.dim)
            out = torch.cat([select_units(piece, axis.dim, kept.units_in(unit, layer, first, count), block,
                                          kept.units(inner, layer)[0] if inner else None)
                             for piece, (unit, block, first, count, inner) in zip(pieces, segments)], axis.dim)
            continue
        units, values = kept.units(axis.unit, layer)
        inner, inner_values = kept.units(axis.inner, layer) if axis.inner else (None, None)
        out = select_units(out, axis.dim, units, axis.block, inner)
        if not fold or axis.fold is None:
            continue
        repeat = axis.block if inner is None else len(inner)
        if axis.fold == "unit" and inner_values is not None:  # a head's value times each kept channel's
            heads = torch.ones(len(units)) if values is None else values
            factor = (heads.view(-1, 1) * inner_values.view(1, -1)).flatten()
            repeat = 1
        elif axis.fold == "unit":
            factor = values
        else:  # "writer": the layer gate times the hidden mask
            _, hidden = kept.units("hidden", None)
            factor = torch.full((len(units),), kept.gate(layer)) if hidden is None else hidden * kept.gate(layer)
        if factor is None:
            continue
        factor = factor.repeat_interleave(repeat, dim=-1).to(out.device, out.dtype)
        shape = [1] * out.dim()
        shape[axis.dim] = -1
        if factor.dim() == 2:  # per expert
            shape[0] = factor.shape[0]
        out = (out + axis.offset) * factor.view(shape) - axis.offset if axis.offset else out * factor.view(shape)
    return out


def persistent_buffers(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """A module's buffers that are saved with its weights (LFM2-MoE's per-expert routing bias),
    not the ones it computes itself (rotary frequencies)."""
    saved = set(module.state_dict(keep_vars=True))
    return [(name, buffer) for name, buffer in module.named_buffers() if name in saved]


def named_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Everything a checkpoint of the module holds: its parameters and persistent buffers."""
    return [*module.named_parameters(), *persistent_buffers(module)]


def pruned_state_dict(model: nn.Module, adapter: FamilyAdapter, masks: Masks, source: ArchShape, fold: bool = True,
                      consume: bool = False, tied: bool = False) -> dict:
    """Every parameter of the pruned model (layers renumbered), folded and sliced. Tensors that
    lose nothing are shared, not copied; with `consume`, each source parameter is released as
    soon as it is sliced, so peak memory stays near the source model's size."""
    kept = KeptUnits(masks, source)
    new_index = {old: new for new, old in enumerate(kept.layers)}
    state = {}
    for name, param in named_tensors(model):
        index, rel, axes = adapter.parameter_axes(name, source)
        if index is None:
            state[name] = adapter.rescale(name, prune_tensor(param, axes, kept, None, fold), source.hidden_size,
                                          len(kept.hidden), tied)
        elif index in new_index:
            state[f"{adapter.layers_path}.{new_index[index]}.{rel}"] = prune_tensor(param, axes, kept, index, fold)
        if consume:
            param.data = torch.empty(0, dtype=param.dtype, device=param.device)
    return state


def tied_embeddings(model: nn.Module) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def empty_model(config, dtype: torch.dtype, attn_implementation: str | None = None):
    """An HF model of `config` whose weights are left uninitialised (they are assigned next)."""
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    with no_init_weights():
        return AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation, dtype=dtype)


def slice_model(model: nn.Module, adapter: FamilyAdapter, masks: Masks, target: ArchShape, fold: bool = True,
                consume: bool = False):
    """The pruned HF model: target config, sliced (and folded) weights, tied weights re-tied.
    `consume` empties the source model's parameters along the way (it is unusable afterwards)."""
    source = adapter.shape(model.config)
    tied = tied_embeddings(model)
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    state = pruned_state_dict(model, adapter, masks, source, fold, consume, tied)
    kept_layers = KeptUnits(masks, source).layers
    config = adapter.target_config(model.config, target, kept_layers)
    new = empty_model(config, dtype, getattr(model.config, "_attn_implementation", None))
    missing, unexpected = new.load_state_dict(state, strict=False, assign=True)
    allowed_missing = {f"{adapter.lm_head}.weight"} if tied else set()
    if unexpected or set(missing) - allowed_missing:
        raise RuntimeError(f"pruned weights do not fit the target model: missing {missing}, unexpected {unexpected}")
    if tied:
        new.tie_weights()
    new.to(device)
    new.train(model.training)
    return new

