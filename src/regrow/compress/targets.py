"""Resolve what the user asked for (a shape file, an HF config.json, or a parameter ratio) into
an ArchShape, and count the parameters of any shape exactly and quickly."""

from __future__ import annotations

import math

from torch import nn

from regrow.compress.families.base import FamilyAdapter
from regrow.compress.shape import ArchShape, check_target, read_target_spec, shape_from_spec
from regrow.errors import RegrowError


def count_parameters(model: nn.Module, adapter: FamilyAdapter, shape: ArchShape) -> int:
    """Parameters of `model` cut to `shape`: every tensor's unit axes resized (no model built)."""
    source = adapter.shape(model.config)
    size = {"hidden": shape.hidden_size, "head": shape.num_attention_heads, "kv": shape.num_key_value_heads,
            "mlp": shape.intermediate_size}
    total = 0
    for name, param in model.named_parameters():
        index, _, axes = adapter.parameter_axes(name, source.head_dim)
        if index not in (None, 0):
            continue  # every layer has the shapes of layer 0
        dims = list(param.shape)
        for axis in axes:
            dims[axis.dim] = sum(size[unit] * block for unit, block in axis.parts())
        total += math.prod(dims) * (1 if index is None else shape.num_hidden_layers)
    return total


def _round_to(value: float, quantum: int) -> int:
    return max(quantum, int(round(value / quantum)) * quantum)


def _quantum(size: int) -> int:
    return 8 if size >= 64 and size % 8 == 0 else 1


def width_shape(source: ArchShape, adapter: FamilyAdapter, factor: float) -> ArchShape:
    """Every width scaled by `factor` (rounded to multiples of 8 where the source is), layers kept."""
    if source.group_size == 1:
        heads = kv = max(1, round(factor * source.num_attention_heads))
    else:
        kv = max(1, round(factor * source.num_key_value_heads))
        heads = kv * source.group_size
    if adapter.head_dim_from_hidden:
        hidden = heads * source.head_dim
    else:
        hidden = min(source.hidden_size, _round_to(factor * source.hidden_size, _quantum(source.hidden_size)))
    if adapter.mlp_ratio_fixed:
        mlp = adapter.mlp_ratio_fixed * hidden
    else:
        mlp = min(source.intermediate_size, _round_to(factor * source.intermediate_size, _quantum(source.intermediate_size)))
    return source.replace(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=kv, intermediate_size=mlp)


def shape_for_ratio(model: nn.Module, adapter: FamilyAdapter, ratio: float, depth_only: bool) -> ArchShape:
    """The homogeneous shape whose parameter count is closest to ratio x the source's."""
    source = adapter.shape(model.config)
    goal = ratio * count_parameters(model, adapter, source)
    if depth_only:
        candidates = [source.replace(num_hidden_layers=n) for n in range(1, source.num_hidden_layers + 1)]
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
        raise RegrowError(f"--target {spec_path} is not a valid {model_type} config: {str(err).splitlines()[0]}") from err
    if config.vocab_size != model.config.vocab_size:
        raise RegrowError(f"--target {spec_path} has vocab_size {config.vocab_size} but the model {model.config.vocab_size}; "
                          "pruning keeps the vocabulary")
    target = adapter.shape(config)
    if target.head_dim != source.head_dim:
        raise RegrowError(f"--target {spec_path} has head_dim {target.head_dim} but the model {source.head_dim}; "
                          "pruning keeps or drops whole heads, so head_dim must stay")
    return target


def checked_target(model: nn.Module, adapter: FamilyAdapter, spec_path: str | None, ratio: float | None,
                   depth_only: bool) -> ArchShape:
    """The resolved target, checked against the shared rules, the family's rules and the HF config class."""
    config = model.config
    target = resolve_target(model, adapter, spec_path, ratio, depth_only)
    check_target(adapter.shape(config), target, adapter.check_target, lambda shape: adapter.config_error(config, shape))
    return target
