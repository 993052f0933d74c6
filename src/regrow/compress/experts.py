"""The experts of a mixture-of-experts layer, computed expert by expert so that pruning can see
and mask inside them.

transformers 5 stores a layer's experts fused (`gate_up_proj` [experts, 2 x width, hidden] with
[gate | up] rows, `down_proj` [experts, hidden, width]) and dispatches their forward to eager,
batched or grouped kernels: no module boundary shows one expert's channels or output. While
regrow masks or measures a model, `RoutedExperts` stands in for the experts module's forward
(an instance attribute, removed afterwards; the module and its weights are untouched): the same
computation as transformers' eager loop (act(gate) x up, down, times the routing weight, summed
per token), with an optional per-expert channel mask and an observer that sees each expert's
intermediate activations and outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

# observer(expert, token_indices, intermediate [n, width], output [n, hidden], gate weights [n])
Observer = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]


class RoutedExperts:
    """Installed on one experts module until `remove()`. `channel_mask()` returns [experts, width]
    factors for the intermediate activations (or None); `observe` is called once per routed expert."""

    def __init__(self, experts: nn.Module, channel_mask: Callable[[], torch.Tensor | None] = lambda: None,
                 observe: Observer | None = None):
        if "forward" in vars(experts):
            raise RuntimeError("the experts module is already being masked or measured")
        self.experts, self.channel_mask, self.observe = experts, channel_mask, observe
        experts.forward = self.forward

    def remove(self) -> None:
        if vars(self.experts).get("forward") == self.forward:
            del self.experts.forward

    def forward(self, hidden: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor) -> torch.Tensor:
        experts = self.experts
        mask = self.channel_mask()
        out = torch.zeros_like(hidden)
        for expert in torch.unique(top_k_index).tolist():
            token, slot = torch.where(top_k_index == expert)
            gate, up = F.linear(hidden[token], experts.gate_up_proj[expert]).chunk(2, dim=-1)
            inner = experts.act_fn(gate) * up
            if mask is not None:
                inner = inner * mask[expert].to(inner.device, inner.dtype)
            output = F.linear(inner, experts.down_proj[expert])
            weights = top_k_weights[token, slot]
            if self.observe is not None:
                self.observe(expert, token, inner, output, weights)
            out.index_add_(0, token, (output * weights[:, None]).to(out.dtype))
        return out


def find(layer: nn.Module, name: str | None) -> nn.Module | None:
    """The submodule `name` of a layer, or None when the name is empty or this layer lacks it
    (dense and mixture-of-experts layers of one model have different MLP modules)."""
    if not name:
        return None
    try:
        return layer.get_submodule(name)
    except AttributeError:
        return None
