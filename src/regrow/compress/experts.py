"""The experts of a mixture-of-experts layer, computed expert by expert so that pruning can see
and mask inside them.

transformers 5 stores a layer's experts fused (`gate_up_proj` [experts, 2 x width, hidden] with
[gate | up] rows, `down_proj` [experts, hidden, width]; Nemotron-H's non-gated experts hold
`up_proj` [experts, width, hidden] instead; gpt-oss stores them transposed, [experts, in, out],
with interleaved gate/up columns, biases and its own clamped gate) and states the layout on the
module (`has_gate`, `has_bias`, `is_transposed`, `_apply_gate`), from which it dispatches the
forward to eager, batched or grouped kernels: no module boundary shows one expert's channels or
output. While
regrow masks or measures a model, `RoutedExperts` stands in for the experts module's forward
(an instance attribute, removed afterwards; the module and its weights are untouched): the same
computation as transformers' eager loop (the experts' gate of gate_up or act(up), down, plus biases,
times the routing weight, summed per token), with an optional per-expert channel mask and an observer that sees each expert's
intermediate activations and outputs. For the sparse methods, `ExpertMatrix` shows one
expert's matrix of a fused tensor as a linear layer of its own; `RoutedExperts(linear=...)`
computes through those so that their hooks see each expert's inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

# observer(expert, token_indices, intermediate [n, width], output [n, hidden], gate weights [n])
Observer = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]
# linear(fused tensor name, expert, input [n, in]) -> output [n, out]
Linear = Callable[[str, int, torch.Tensor], torch.Tensor]


def fused_names(experts: nn.Module) -> tuple[str, str]:
    """The fused tensors of an experts module, in call order: gated or not."""
    return ("gate_up_proj" if hasattr(experts, "gate_up_proj") else "up_proj", "down_proj")


def expert_weight(experts: nn.Module, fused: str, expert: int) -> torch.Tensor:
    """One expert's matrix of a fused tensor as a linear layer's weight, [out, in] (a view)."""
    weight = getattr(experts, fused)[expert]
    return weight.T if getattr(experts, "is_transposed", False) else weight


def expert_bias(experts: nn.Module, fused: str, expert: int) -> torch.Tensor | None:
    return getattr(experts, f"{fused}_bias")[expert] if getattr(experts, "has_bias", False) else None


def gate_and_up(experts: nn.Module, expert: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of one expert's gate and up rows of gate_up_proj, [width, in] each: concatenated
    [gate | up] or interleaved [gate0, up0, gate1, ...] (gpt-oss)."""
    weight = expert_weight(experts, "gate_up_proj", expert)
    return weight.chunk(2, dim=0) if getattr(experts, "is_concatenated", True) else (weight[0::2], weight[1::2])


def gated(experts: nn.Module, gate_up: torch.Tensor) -> torch.Tensor:
    """The experts' own gating of gate_up_proj's output (transformers' `_apply_gate`, gpt-oss's
    clamped SwiGLU), or act(gate) x up of a concatenated [gate | up]."""
    if hasattr(experts, "_apply_gate"):
        return experts._apply_gate(gate_up)
    gate, up = gate_up.chunk(2, dim=-1)
    return experts.act_fn(gate) * up


class ExpertMatrix(nn.Module):
    """One expert's matrix of a fused experts tensor (`gate_up_proj[e]`, `down_proj[e]`: [out, in],
    like a linear's weight) standing in for a linear layer: a sparse method treats each expert's
    matrix as a layer of its own. Not part of the model; `weight` is a view of the fused parameter,
    so masking or updating it changes the model's tensor in place."""

    def __init__(self, experts: nn.Module, fused: str, expert: int, parameter: str):
        super().__init__()
        self._experts = (experts,)  # in a tuple, so the experts module is not registered as a child
        self.fused, self.expert, self.parameter = fused, expert, parameter  # parameter: the fused tensor's full name

    @property
    def experts(self) -> nn.Module:
        return self._experts[0]

    @property
    def weight(self) -> torch.Tensor:
        return expert_weight(self.experts, self.fused, self.expert)

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, expert_bias(self.experts, self.fused, self.expert))


def expert_matrices(experts: nn.Module, prefix: str) -> dict[str, ExpertMatrix]:
    """Every expert's matrices of a fused experts module, in call order (expert by expert, gate_up
    before down), named `{prefix}.gate_up_proj[e]`."""
    names = fused_names(experts)
    count = getattr(experts, names[0]).shape[0]
    return {f"{prefix}.{fused}[{e}]": ExpertMatrix(experts, fused, e, f"{prefix}.{fused}")
            for e in range(count) for fused in names}


def route_through(matrices: list[ExpertMatrix]) -> list[RoutedExperts]:
    """Compute the experts modules of `matrices` expert by expert through those matrices (so that
    their forward hooks run); `remove()` each afterwards."""
    by_module: dict[nn.Module, dict[tuple[str, int], ExpertMatrix]] = {}
    for matrix in matrices:
        by_module.setdefault(matrix.experts, {})[matrix.fused, matrix.expert] = matrix
    return [RoutedExperts(experts, linear=lambda fused, e, x, own=own: own[fused, e](x))
            for experts, own in by_module.items()]


class RoutedExperts:
    """Installed on one experts module until `remove()`. `channel_mask()` returns [experts, width]
    factors for the intermediate activations (or None); `observe` is called once per routed expert;
    `linear` computes an expert's matrix on its tokens (default: the fused tensor's slice)."""

    def __init__(self, experts: nn.Module, channel_mask: Callable[[], torch.Tensor | None] = lambda: None,
                 observe: Observer | None = None, linear: Linear | None = None):
        if "forward" in vars(experts):
            raise RuntimeError("the experts module is already being masked or measured")
        self.experts, self.channel_mask, self.observe = experts, channel_mask, observe
        self.gated = hasattr(experts, "gate_up_proj")
        self.linear = linear or (lambda fused, e, x: F.linear(x, expert_weight(experts, fused, e),
                                                              expert_bias(experts, fused, e)))
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
            if self.gated:
                inner = gated(experts, self.linear("gate_up_proj", expert, hidden[token]))
            else:
                inner = experts.act_fn(self.linear("up_proj", expert, hidden[token]))
            if mask is not None:
                inner = inner * mask[expert].to(inner.device, inner.dtype)
            output = self.linear("down_proj", expert, inner)
            weights = top_k_weights[token, slot]
            if self.observe is not None:
                self.observe(expert, token, inner, output, weights)
            out.index_add_(0, token, (output * weights[:, None]).to(out.dtype))
        return out


def find_mamba(layer: nn.Module, name: str | None) -> nn.Module | None:
    """The layer's Mamba-2 mixer, or None in a layer whose module of that name is something else
    (Nemotron-H calls every layer's mixer `mixer`: Mamba, attention or MLP)."""
    module = find(layer, name)
    return module if module is not None and hasattr(module, "A_log") else None


def find(layer: nn.Module, name: str | None) -> nn.Module | None:
    """The submodule `name` of a layer, or None when the name is empty or this layer lacks it
    (dense and mixture-of-experts layers of one model have different MLP modules)."""
    if not name:
        return None
    try:
        return layer.get_submodule(name)
    except AttributeError:
        return None
