"""Unit importance without gradients: activation statistics, block influence, weight magnitude.

Activation statistics follow Minitron (docs/ALGORITHMS.md §2): per sample, the mean over tokens of
|activation| (for a head: of the L2 norm of its context vector); then reduced over the batch,
either as the L2 norm over samples (Minitron's choice, `batch_reduction: l2`) or the mean.
Block influence (ShortGPT) is 1 - cos(h_in, h_out) of a layer, averaged over tokens.
Mixtures of experts (docs/ALGORITHMS.md §9): an expert's channels score the mean |activation| over the
tokens routed to it; an expert scores by `expert_criterion`: `reap` (mean over its routed tokens
of gate x ||output||), `frequency` (share of tokens routed to it) or `random` (seeded).
A Mamba-2 head scores as an attention head does: the L2 norm of its channels where they enter
the output projection (after the gated norm), mean over tokens, reduced over the batch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from regrow.compress.experts import RoutedExperts, find, find_mamba
from regrow.compress.families.base import FamilyAdapter
from regrow.compress.masks import Masks
from regrow.compress.shape import ArchShape


def hidden_of(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _cos_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum over tokens of 1 - cos(a, b) along the hidden dim."""
    return (1 - torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)).sum()


class ActivationStats:
    """Accumulates importance statistics over calibration forwards.

    Either hooked into a whole model (`ActivationStats(model, adapter)`: every layer, block
    influence from the layers' inputs and outputs), or fed layer by layer by a caller that runs
    the layers itself (`for_shape`, `hook_units`, `add_influence`: the streaming path).
    """

    def __init__(self, model: nn.Module | None, adapter: FamilyAdapter, batch_reduction: str = "l2", block_size: int = 0,
                 shape: ArchShape | None = None):
        self.reduction = batch_reduction
        self.block_size = block_size  # > 0: also score every run of `block_size` consecutive layers
        self.adapter = adapter
        shape = shape or adapter.shape(model.config)
        self.shape = shape
        L = shape.num_hidden_layers
        self.head = torch.zeros(L, shape.num_attention_heads, dtype=torch.float64)
        self.mlp = torch.zeros(L, shape.intermediate_size, dtype=torch.float64)
        self.hidden = torch.zeros(shape.hidden_size, dtype=torch.float64)
        self.shared_mlp = torch.zeros(L, shape.shared_expert_intermediate_size, dtype=torch.float64)
        self.mamba_head = torch.zeros(L, shape.mamba_num_heads, dtype=torch.float64)
        self.mamba_channel = torch.zeros(L, shape.mamba_head_dim, dtype=torch.float64)
        self.linear_head = torch.zeros(L, shape.linear_num_value_heads, dtype=torch.float64)
        self.q_latent = torch.zeros(L, shape.q_lora_rank, dtype=torch.float64)
        self.kv_latent = torch.zeros(L, shape.kv_lora_rank, dtype=torch.float64)
        self.has_conv = "conv" in shape.layer_kinds
        self.conv = torch.zeros(L, shape.hidden_size if self.has_conv else 0, dtype=torch.float64)
        self.expert_mlp = torch.zeros(L, shape.num_experts, shape.moe_intermediate_size, dtype=torch.float64)
        self.routed = torch.zeros(L, shape.num_experts, dtype=torch.float64)  # tokens routed to each expert
        self.reap = torch.zeros(L, shape.num_experts, dtype=torch.float64)  # sum of gate x ||expert output||
        self.influence = torch.zeros(L, dtype=torch.float64)
        self.block_influence = torch.zeros(max(L - block_size + 1, 0), dtype=torch.float64)
        self.samples = 0
        self.tokens = 0
        self._inputs: list[torch.Tensor | None] = [None] * (L + 1)
        self.handles = []
        if model is None:
            return
        for index, layer in enumerate(adapter.layers(model)):
            self.handles += self.hook_units(layer, lambda index=index: index, adapter.layer_kind(shape, index))
            self.handles.append(layer.register_forward_pre_hook(self._layer_in_hook(index), with_kwargs=True))
            self.handles.append(layer.register_forward_hook(self._layer_out_hook(index)))

    @classmethod
    def for_shape(cls, shape: ArchShape, adapter: FamilyAdapter, batch_reduction: str = "l2", block_size: int = 0):
        return cls(None, adapter, batch_reduction, block_size, shape)

    def hook_units(self, layer: nn.Module, index, kind: str | None = None) -> list:
        """Hooks on one layer's (of `kind`) head, MLP and hidden-writing modules; `index()` says
        which layer the statistics belong to (a streaming caller reuses one module for every layer
        of a kind)."""
        r = self.adapter.roles_of(kind)
        handles = []
        if (attn_out := find(layer, r.attn_out)) is not None:
            handles.append(attn_out.register_forward_pre_hook(self._head_hook(index, self.head)))
        if (mamba := find_mamba(layer, r.mamba)) is not None:
            out_proj = mamba.get_submodule("out_proj")
            handles.append(out_proj.register_forward_pre_hook(self._head_hook(index, self.mamba_head)))
            handles.append(out_proj.register_forward_pre_hook(self._channel_hook(index, self.mamba_channel)))
        if (deltanet_out := find(layer, r.deltanet_out)) is not None:
            handles.append(deltanet_out.register_forward_pre_hook(self._head_hook(index, self.linear_head)))
        conv_out = f"{r.short_conv}.out_proj" if r.short_conv else None
        latents = ((f"{r.mla}.q_b_proj", self.q_latent), (f"{r.mla}.kv_b_proj", self.kv_latent)) if r.mla else ()
        for name, acc in ((r.mlp_out, self.mlp), (r.shared_out, self.shared_mlp), (conv_out, self.conv), *latents):
            if (module := find(layer, name)) is not None:
                handles.append(module.register_forward_pre_hook(self._mlp_hook(index, acc)))
        for name in (*r.norms, *self.adapter.norm_writers(kind)):
            handles.append(layer.get_submodule(name).register_forward_hook(self._hidden_hook))
        if (experts := find(layer, r.experts)) is not None:
            handles.append(RoutedExperts(experts, observe=self._expert_observer(index)))
        return handles

    def add_influence(self, index: int, h_in: torch.Tensor, h_out: torch.Tensor) -> None:
        self.influence[index] += float(_cos_distance(h_in, h_out))

    def add_block_influence(self, start: int, h_in: torch.Tensor, h_out: torch.Tensor) -> None:
        self.block_influence[start] += float(_cos_distance(h_in, h_out))

    def count(self, hidden: torch.Tensor) -> None:
        self.samples += hidden.shape[0]
        self.tokens += hidden.shape[0] * hidden.shape[1]

    def _add(self, acc: torch.Tensor, stat: torch.Tensor) -> None:
        """stat: [batch, units] per-sample statistic."""
        stat = stat.to(acc.device, torch.float64)
        acc += (stat * stat).sum(0) if self.reduction == "l2" else stat.sum(0)

    def _head_hook(self, index, acc: torch.Tensor):
        """Attention heads (o_proj's input), Mamba-2 or gated-DeltaNet heads (out_proj's input)."""

        def hook(module, args):
            x = args[0]
            per_head = x.view(*x.shape[:-1], acc.shape[1], -1).float().norm(dim=-1)
            self._add(acc[index()], per_head.mean(1))

        return hook

    def _channel_hook(self, index, acc: torch.Tensor):
        """A Mamba-2 head's channels (the same channel of every head, out_proj's input): per token
        the L2 norm over the heads, mean over tokens, as a head's score."""

        def hook(module, args):
            x = args[0]
            per_channel = x.view(*x.shape[:-1], -1, acc.shape[1]).float().norm(dim=-2)
            self._add(acc[index()], per_channel.mean(1))

        return hook

    def _mlp_hook(self, index, acc: torch.Tensor):
        def hook(module, args):
            x = args[0]  # [batch, tokens, units] (MLA's kv latent: [batch, 1, tokens, units]), or [tokens, units]
            x = x.flatten(1, -2) if x.dim() > 2 else x.unsqueeze(0)
            per_sample = x.float().abs().mean(1)
            self._add(acc[index()], per_sample)

        return hook

    def _expert_observer(self, index):
        def observe(expert: int, token, inner, output, weights) -> None:
            i = index()
            self.expert_mlp[i, expert] += inner.detach().float().abs().sum(0).to(self.expert_mlp.device, torch.float64)
            self.routed[i, expert] += len(token)
            self.reap[i, expert] += float((weights.detach().float() * output.detach().float().norm(dim=-1)).sum())

        return observe

    def _hidden_hook(self, module, args, output):
        self._add(self.hidden, output.float().abs().mean(1))

    def _layer_in_hook(self, index: int):
        def hook(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            self._inputs[index] = h.detach()
            if index == 0:
                self.count(h)

        return hook

    def _layer_out_hook(self, index: int):
        def hook(module, args, output):
            out = hidden_of(output)
            self.add_influence(index, self._inputs[index], out)
            if self.block_size == 0:
                self._inputs[index] = None  # only runs of layers need the hidden states kept
                return
            self._inputs[index + 1] = out.detach()
            L = self.shape.num_hidden_layers
            if index == L - 1:
                n = self.block_size
                for start in range(L - n + 1 if n > 0 else 0):
                    self.add_block_influence(start, self._inputs[start], self._inputs[start + n])
                self._inputs = [None] * (L + 1)

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _reduce(self, acc: torch.Tensor) -> torch.Tensor:
        return acc.sqrt() if self.reduction == "l2" else acc / max(self.samples, 1)

    def scores(self, expert_criterion: str = "reap", seed: int = 0) -> Masks:
        """Head, MLP-channel, hidden-channel and layer scores (higher = more important); for a
        mixture of experts also expert, expert-channel and shared-expert-channel scores."""
        masks = Masks(
            layer=self.influence / max(self.tokens, 1),
            head=self._reduce(self.head),
            mlp=self._reduce(self.mlp),
            hidden=self._reduce(self.hidden),
        )
        if self.shape.mamba_num_heads:
            masks.mamba_head, masks.mamba_channel = self._reduce(self.mamba_head), self._reduce(self.mamba_channel)
        if self.shape.linear_num_value_heads:
            masks.linear_head = self._reduce(self.linear_head)
        if self.has_conv:
            masks.conv = self._reduce(self.conv)
        if self.shape.kv_lora_rank:
            masks.q_latent, masks.kv_latent = self._reduce(self.q_latent), self._reduce(self.kv_latent)
        if self.shape.shared_expert_intermediate_size:
            masks.shared_mlp = self._reduce(self.shared_mlp)
        if self.shape.num_experts:
            routed = self.routed.clamp_min(1)
            masks.expert_mlp = self.expert_mlp / routed.unsqueeze(-1)
            masks.expert = {
                "reap": lambda: self.reap / routed,
                "frequency": lambda: self.routed / max(self.tokens, 1),
                "random": lambda: torch.rand(self.routed.shape, generator=torch.Generator().manual_seed(seed)).double(),
            }[expert_criterion]()
        return masks


def weight_magnitude(model: nn.Module, adapter: FamilyAdapter) -> Masks:
    """L2 norm of the weights that belong to each unit (rows and columns of every matrix)."""
    return magnitude_of(model.named_parameters(), adapter, adapter.shape(model.config))


def magnitude_of(named_tensors: Iterable[tuple[str, torch.Tensor]], adapter: FamilyAdapter, shape: ArchShape) -> Masks:
    """Unit weight norms from (name, tensor) pairs, one tensor at a time (a model's parameters
    or a checkpoint read lazily). Key/value rows count towards every query head of their group,
    shared equally (a gated DeltaNet's key-head rows likewise towards its value heads)."""
    L = shape.num_hidden_layers
    sums = {
        "head": torch.zeros(L, shape.num_attention_heads, dtype=torch.float64),
        "kv": torch.zeros(L, shape.num_key_value_heads, dtype=torch.float64),
        "mlp": torch.zeros(L, shape.intermediate_size, dtype=torch.float64),
        "shared_mlp": torch.zeros(L, shape.shared_expert_intermediate_size, dtype=torch.float64),
        "expert": torch.zeros(L, shape.num_experts, dtype=torch.float64),
        "expert_mlp": torch.zeros(L, shape.num_experts, shape.moe_intermediate_size, dtype=torch.float64),
        "mamba_head": torch.zeros(L, shape.mamba_num_heads, dtype=torch.float64),
        "mamba_group": torch.zeros(L, shape.mamba_groups, dtype=torch.float64),
        "mamba_channel": torch.zeros(L, shape.mamba_head_dim, dtype=torch.float64),
        "q_latent": torch.zeros(L, shape.q_lora_rank, dtype=torch.float64),
        "kv_latent": torch.zeros(L, shape.kv_lora_rank, dtype=torch.float64),
        "rope_key": torch.zeros(L, 1, dtype=torch.float64),  # never pruned
        "linear_key": torch.zeros(L, shape.linear_num_key_heads, dtype=torch.float64),
        "linear_head": torch.zeros(L, shape.linear_num_value_heads, dtype=torch.float64),
        "conv": torch.zeros(L, shape.hidden_size, dtype=torch.float64),
    }
    hidden = torch.zeros(shape.hidden_size, dtype=torch.float64)
    layer = torch.zeros(L, dtype=torch.float64)

    with torch.no_grad():
        for name, param in named_tensors:
            index, _, axes = adapter.parameter_axes(name, shape)
            tensor = param.detach()
            offset = max((axis.offset for axis in axes), default=0.0)
            if offset:  # a norm gain applied as offset + weight (Gemma): that is the unit's weight
                tensor = tensor.float() + offset
            # fused experts [experts, rows, columns] (or a bias [experts, entries]): one expert at a time
            per_expert = tensor.dim() >= 2 and len(axes) > 1 and axes[0].unit == "expert"
            for expert, piece in enumerate(tensor) if per_expert else [(None, tensor)]:
                rows, cols = _squares_by_row_and_column(piece)
                if index is not None:
                    layer[index] += float(rows.sum())
                for axis in axes:
                    if per_expert and axis.dim == 0:
                        sums["expert"][index, expert] += float(rows.sum())
                        continue
                    squares = rows if axis.dim - per_expert == 0 else cols
                    segments = axis.segments(shape)
                    pieces = squares.split([count * block for _, block, _, count, _ in segments])
                    for part, (unit, block, first, count, inner) in zip(pieces, segments):
                        values, units = part.view(-1, block).sum(-1), slice(first, first + count)
                        if inner:  # the same channel of every head: its squares summed over the heads
                            sums[inner][index] += part.view(-1, block).sum(0)
                        if unit == "hidden":
                            hidden += values
                        elif unit == "expert_mlp":
                            sums[unit][index, expert] += values
                        else:  # head, kv, mlp and expert axes exist only inside layers
                            sums[unit][index, units] += values
    head = sums["head"] + (sums["kv"] / shape.group_size).repeat_interleave(shape.group_size, dim=1)
    masks = Masks(layer=layer.sqrt(), head=head.sqrt(), mlp=sums["mlp"].sqrt(), hidden=hidden.sqrt())
    if shape.mamba_num_heads:
        per = shape.mamba_num_heads // shape.mamba_groups  # a group's B and C are shared by its heads
        masks.mamba_head = (sums["mamba_head"] + (sums["mamba_group"] / per).repeat_interleave(per, dim=1)).sqrt()
        masks.mamba_channel = sums["mamba_channel"].sqrt()
    if shape.linear_num_value_heads:
        r = shape.linear_group_size
        masks.linear_head = (sums["linear_head"] + (sums["linear_key"] / r).repeat_interleave(r, dim=1)).sqrt()
    if "conv" in shape.layer_kinds:
        masks.conv = sums["conv"].sqrt()
    if shape.kv_lora_rank:
        masks.q_latent, masks.kv_latent = sums["q_latent"].sqrt(), sums["kv_latent"].sqrt()
    if shape.shared_expert_intermediate_size:
        masks.shared_mlp = sums["shared_mlp"].sqrt()
    if shape.num_experts:
        masks.expert, masks.expert_mlp = sums["expert"].sqrt(), sums["expert_mlp"].sqrt()
    return masks


def _squares_by_row_and_column(tensor: torch.Tensor, block_elements: int = 1 << 22) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sums of squares of each row (dim 0) and each column (dim 1) of a weight, in float32 blocks
    of rows: the temporary stays a few MB even for an embedding table."""
    rows = torch.zeros(tensor.shape[0], dtype=torch.float64)
    cols = torch.zeros(tensor.shape[1], dtype=torch.float64) if tensor.dim() > 1 else None
    step = max(1, block_elements // max(1, tensor[0].numel()))
    for start in range(0, tensor.shape[0], step):
        square = tensor[start : start + step].float().square()
        rows[start : start + len(square)] = (square.sum(tuple(range(1, square.dim()))) if square.dim() > 1 else square).double().cpu()
        if cols is not None:
            cols += square.sum((0, *range(2, square.dim()))).double().cpu()
    return rows, cols
