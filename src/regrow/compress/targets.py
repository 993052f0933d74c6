"""Resolve what the user asked for (a shape file, an HF config.json, or a parameter ratio) into
an ArchShape, and count the parameters of any shape exactly and quickly."""

from __future__ import annotations

import math

from torch import nn

from regrow.compress.families.base import FamilyAdapter
from regrow.compress.shape import (
    ArchShape,
    check_target,
    layer_counts,
    read_target_spec,
    shape_from_spec,
)
from regrow.errors import RegrowError, reason_of


def count_parameters(model: nn.Module, adapter: FamilyAdapter, shape: ArchShape, layers: list[int] | None = None) -> int:
    """Parameters of `model` cut to `shape`: every tensor's unit axes resized (no model built).
    `layers`: the kept source layers. Without them, a model whose layers differ in size (dense
    and mixture-of-experts layers) is counted with the mean layer, exact once layers are chosen."""
    source = adapter.shape(model.config)
    layer_axes = {kind: adapter.layer_axes(source, kind) for kind in (*source.layer_kinds, None)}
    prefix = adapter.layers_path + "."
    per_layer = [0] * source.num_hidden_layers
    outer = 0
    for name, param in model.named_parameters():
        if name.startswith(prefix):
            index_text, rel = name[len(prefix):].split(".", 1)
            index = int(index_text)
            axes = layer_axes[adapter.layer_kind(source, index)].get(rel)
        else:
            index, axes = None, adapter.parameter_axes(name, source)[2]
        if axes is None:
            adapter.parameter_axes(name, source)  # raises: not described by the adapter
        dims = list(param.shape)
        for axis in axes:
            dims[axis.dim] = sum(shape.units(unit) * (shape.units(inner) if inner else block) for unit, block, inner in axis.parts())
        if index is None:
            outer += math.prod(dims)
        else:
            per_layer[index] += math.prod(dims)
    if layers is None and shape.num_hidden_layers == source.num_hidden_layers:
        layers = list(range(source.num_hidden_layers))
    if layers is not None:
        return outer + sum(per_layer[i] for i in layers)
    return outer + round(sum(per_layer) * shape.num_hidden_layers / source.num_hidden_layers)


def _round_to(value: float, quantum: int) -> int:
    return max(quantum, int(round(value / quantum)) * quantum)


def _quantum(size: int, aligned: bool = False) -> int:
    """Round to multiples of 8 where the source is (always, for `aligned` sizes: expert kernels)."""
    return 8 if (size >= 64 or aligned) and size % 8 == 0 else 1


def width_shape(source: ArchShape, adapter: FamilyAdapter, factor: float) -> ArchShape:
    """Every width scaled by `factor` (rounded to multiples of 8 where the source is), layers kept."""
    if source.group_size == 1:
        heads = kv = max(1, round(factor * source.num_attention_heads))
    else:
        kv = max(1, round(factor * source.num_key_value_heads))
        heads = kv * source.group_size
    moe = source.num_experts > 0

    def scaled(size: int, aligned: bool = False) -> int:
        return 0 if size == 0 else min(size, _round_to(factor * size, _quantum(size, aligned)))

    hidden = heads * source.head_dim if adapter.head_dim_from_hidden else scaled(source.hidden_size, moe)
    mlp = adapter.mlp_ratio_fixed * hidden if adapter.mlp_ratio_fixed else scaled(source.intermediate_size)
    return source.replace(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=mlp,
                          moe_intermediate_size=scaled(source.moe_intermediate_size, aligned=True),
                          shared_expert_intermediate_size=scaled(source.shared_expert_intermediate_size))


EXPERT_FLOOR = 0.5  # a ratio removes experts first, down to half of them (REAP: near-lossless there); widths take the rest
NEAR = 0.02  # an experts-only shape this close to the goal (fraction of the source) is taken as it is


def expert_floor(source: ArchShape) -> int:
    return max(source.num_experts_per_tok, math.ceil(EXPERT_FLOOR * source.num_experts))


def grouped_ok(source: ArchShape, experts: int) -> bool:
    """Whether `experts` fill the source's routing groups evenly, two or more in each, and serve
    a token's top-k within its topk_group groups (always true without group-limited routing)."""
    if not source.n_group:
        return True
    per_group = experts // source.n_group
    return experts % source.n_group == 0 and per_group >= 2 and source.topk_group * per_group >= source.num_experts_per_tok


def describe_split(source: ArchShape, target: ArchShape) -> str:
    """How a ratio target shared the cut between experts, widths and layers (printed, reported)."""
    parts = []
    if source.num_experts:
        parts.append(f"experts {source.num_experts} -> {target.num_experts}")
    widths = [(k, getattr(source, k), getattr(target, k)) for k in ("hidden_size", "num_attention_heads",
              "intermediate_size", "moe_intermediate_size", "shared_expert_intermediate_size") if getattr(source, k)]
    parts += [f"{k} x{new / old:.2f}" for k, old, new in widths if new != old] or ["widths kept"]
    if target.num_hidden_layers != source.num_hidden_layers:
        parts.append(f"layers {source.num_hidden_layers} -> {target.num_hidden_layers}")
    return ", ".join(parts)


def shape_for_ratio(model: nn.Module, adapter: FamilyAdapter, ratio: float, depth_only: bool) -> ArchShape:
    """The homogeneous shape whose parameter count is closest to ratio x the source's. A mixture
    of experts loses experts first (down to EXPERT_FLOOR of them), then widths."""
    source = adapter.shape(model.config)
    total = count_parameters(model, adapter, source)
    goal = ratio * total
    if depth_only:
        candidates = [source.replace(num_hidden_layers=n) for n in range(1, source.num_hidden_layers + 1)]
    elif source.num_experts:  # experts first, down to the floor; then every width at the floor
        floor = expert_floor(source)
        experts = [source.replace(num_experts=e) for e in range(floor, source.num_experts + 1) if grouped_ok(source, e)]
        floor = experts[0].num_experts
        closest = min(experts, key=lambda s: abs(count_parameters(model, adapter, s) - goal))
        if abs(count_parameters(model, adapter, closest) - goal) <= NEAR * total:
            candidates = [closest]
        else:
            candidates = list({width_shape(source.replace(num_experts=floor), adapter, k / 1000): None for k in range(1, 1001)})
    else:
        candidates = list({width_shape(source, adapter, k / 1000): None for k in range(1, 1001)})
    ranked = sorted(candidates, key=lambda s: (abs(count_parameters(model, adapter, s) - goal), -s.hidden_size))
    for shape in ranked:
        if adapter.config_error(model.config, shape) is None:
            return shape
    raise RegrowError(f"no {adapter.name} shape with about {ratio:.0%} of the parameters passes the HF config checks")


def resolve_target(model: nn.Module, adapter: FamilyAdapter, spec_path: str | None, ratio: float | None,
                   depth_only: bool) -> ArchShape:
    source = adapter.shape(model.config)
    if ratio is not None:
        return shape_for_ratio(model, adapter, ratio, depth_only)
    spec = read_target_spec(spec_path)
    if "model_type" not in spec:
        where = f"--target {spec_path}"
        spec = adapter.canonical_spec(spec, where)
        shape_from_spec(spec, source, where)  # checks keys and types before anything is derived
        return shape_from_spec(adapter.complete_spec(spec, source), source, where)
    # an existing HF config.json: prune to that model's shape
    from transformers import AutoConfig

    fields = dict(spec)
    model_type = fields.pop("model_type")
    if model_type not in adapter.model_types:
        raise RegrowError(f"--target {spec_path} is a {model_type!r} config but the model is {model.config.model_type!r}; "
                          f"allowed model_type: {', '.join(adapter.model_types)}")
    try:
        config = AutoConfig.for_model(model_type, **fields)
    except (ValueError, TypeError) as err:
        raise RegrowError(f"--target {spec_path} is not a valid {model_type} config: {reason_of(err)}") from err
    if config.vocab_size != model.config.vocab_size:
        raise RegrowError(f"--target {spec_path} has vocab_size {config.vocab_size} but the model {model.config.vocab_size}; "
                          "pruning keeps the vocabulary")
    target = adapter.shape(config)
    if target.head_dim != source.head_dim:
        raise RegrowError(f"--target {spec_path} has head_dim {target.head_dim} but the model {source.head_dim}; "
                          "pruning keeps or drops whole heads, so head_dim must stay")
    if len(set(source.layer_kinds)) > 1 and target.num_hidden_layers < source.num_hidden_layers:
        counts = {kind: target.layer_kinds.count(kind) for kind in dict.fromkeys(target.layer_kinds)}
        target = target.replace(layers_by_kind=layer_counts(counts, source, f"--target {spec_path} (its layer types)"))
    return target


def checked_target(model: nn.Module, adapter: FamilyAdapter, spec_path: str | None, ratio: float | None,
                   depth_only: bool) -> ArchShape:
    """The resolved target, checked against the shared rules, the family's rules and the HF config class."""
    config = model.config
    target = resolve_target(model, adapter, spec_path, ratio, depth_only)
    check_target(adapter.shape(config), target, adapter.check_target, lambda shape: adapter.config_error(config, shape))
    return target
