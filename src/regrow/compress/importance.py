"""Unit importance without gradients: activation statistics, block influence, weight magnitude.

Activation statistics follow Minitron (ALGORITHMS.md §2): per sample, the mean over tokens of
|activation| (for a head: of the L2 norm of its context vector); then reduced over the batch,
either as the L2 norm over samples (Minitron's choice, `batch_reduction: l2`) or the mean.
Block influence (ShortGPT) is 1 - cos(h_in, h_out) of a layer, averaged over tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from regrow.compress.families.base import FamilyAdapter
from regrow.compress.masks import Masks


def _hidden_of(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _cos_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum over tokens of 1 - cos(a, b) along the hidden dim."""
    return (1 - torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)).sum()


class ActivationStats:
    """Hooks that accumulate importance statistics over calibration forwards."""

    def __init__(self, model: nn.Module, adapter: FamilyAdapter, batch_reduction: str = "l2", block_size: int = 0):
        self.reduction = batch_reduction
        self.block_size = block_size  # > 0: also score every run of `block_size` consecutive layers
        shape = adapter.shape(model.config)
        self.shape = shape
        L = shape.num_hidden_layers
        self.head = torch.zeros(L, shape.num_attention_heads, dtype=torch.float64)
        self.mlp = torch.zeros(L, shape.intermediate_size, dtype=torch.float64)
        self.hidden = torch.zeros(shape.hidden_size, dtype=torch.float64)
        self.influence = torch.zeros(L, dtype=torch.float64)
        self.block_influence = torch.zeros(max(L - block_size + 1, 0), dtype=torch.float64)
        self.samples = 0
        self.tokens = 0
        self._inputs: list[torch.Tensor | None] = [None] * (L + 1)
        self.handles = []
        r = adapter.roles
        hidden_norms = list(r.norms) + [w for w in r.writers if w not in (r.attn_out, r.mlp_out)]
        for index, layer in enumerate(adapter.layers(model)):
            get = layer.get_submodule
            self.handles.append(get(r.attn_out).register_forward_pre_hook(self._head_hook(index)))
            self.handles.append(get(r.mlp_out).register_forward_pre_hook(self._mlp_hook(index)))
            for name in hidden_norms:
                self.handles.append(get(name).register_forward_hook(self._hidden_hook))
            self.handles.append(layer.register_forward_pre_hook(self._layer_in_hook(index), with_kwargs=True))
            self.handles.append(layer.register_forward_hook(self._layer_out_hook(index)))

    def _add(self, acc: torch.Tensor, stat: torch.Tensor) -> None:
        """stat: [batch, units] per-sample statistic."""
        stat = stat.to(acc.device, torch.float64)
        acc += (stat * stat).sum(0) if self.reduction == "l2" else stat.sum(0)

    def _head_hook(self, index: int):
        def hook(module, args):
            x = args[0]
            per_head = x.view(*x.shape[:-1], self.shape.num_attention_heads, -1).float().norm(dim=-1)
            self._add(self.head[index], per_head.mean(1))

        return hook

    def _mlp_hook(self, index: int):
        def hook(module, args):
            self._add(self.mlp[index], args[0].float().abs().mean(1))

        return hook

    def _hidden_hook(self, module, args, output):
        self._add(self.hidden, output.float().abs().mean(1))

    def _layer_in_hook(self, index: int):
        def hook(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            self._inputs[index] = h.detach()
            if index == 0:
                self.samples += h.shape[0]
                self.tokens += h.shape[0] * h.shape[1]

        return hook

    def _layer_out_hook(self, index: int):
        def hook(module, args, output):
            out = _hidden_of(output)
            self.influence[index] += float(_cos_distance(self._inputs[index], out))
            if self.block_size == 0:
                self._inputs[index] = None  # only runs of layers need the hidden states kept
                return
            self._inputs[index + 1] = out.detach()
            L = self.shape.num_hidden_layers
            if index == L - 1:
                n = self.block_size
                for start in range(L - n + 1 if n > 0 else 0):
                    self.block_influence[start] += float(_cos_distance(self._inputs[start], self._inputs[start + n]))
                self._inputs = [None] * (L + 1)

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _reduce(self, acc: torch.Tensor) -> torch.Tensor:
        return acc.sqrt() if self.reduction == "l2" else acc / max(self.samples, 1)

    def scores(self) -> Masks:
        """Head, MLP-channel, hidden-channel and layer scores (higher = more important)."""
        return Masks(
            layer=self.influence / max(self.tokens, 1),
            head=self._reduce(self.head),
            mlp=self._reduce(self.mlp),
            hidden=self._reduce(self.hidden),
        )


def weight_magnitude(model: nn.Module, adapter: FamilyAdapter) -> Masks:
    """L2 norm of the weights that belong to each unit (rows and columns of every matrix).

    Key/value rows count towards every query head of their group, shared equally.
    """
    shape = adapter.shape(model.config)
    L = shape.num_hidden_layers
    sums = {
        "head": torch.zeros(L, shape.num_attention_heads, dtype=torch.float64),
        "kv": torch.zeros(L, shape.num_key_value_heads, dtype=torch.float64),
        "mlp": torch.zeros(L, shape.intermediate_size, dtype=torch.float64),
    }
    hidden = torch.zeros(shape.hidden_size, dtype=torch.float64)
    layer = torch.zeros(L, dtype=torch.float64)

    def per_unit(tensor: torch.Tensor, dim: int, block: int) -> torch.Tensor:
        """Sum of squares per unit along `dim` (float32 work, one tensor-sized temporary)."""
        sq = tensor.detach().float().square()
        other = [d for d in range(sq.dim()) if d != dim]
        flat = sq.sum(dim=other) if other else sq
        return flat.double().view(-1, block).sum(-1).cpu()

    with torch.no_grad():
        for name, param in model.named_parameters():
            index, _, axes = adapter.parameter_axes(name, shape.head_dim)
            if index is not None:
                layer[index] += float(param.detach().float().square().sum())
            for axis in axes:
                values = per_unit(param, axis.dim, axis.block)
                if axis.unit == "hidden":
                    hidden += values
                else:  # head, kv and mlp axes exist only inside layers
                    sums[axis.unit][index] += values
    head = sums["head"] + (sums["kv"] / shape.group_size).repeat_interleave(shape.group_size, dim=1)
    return Masks(layer=layer.sqrt(), head=head.sqrt(), mlp=sums["mlp"].sqrt(), hidden=hidden.sqrt())
