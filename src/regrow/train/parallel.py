"""Sharding a model over the processes of a run (FSDP2), as torchtitan does.

`parallelize` applies activation checkpointing, per-layer `torch.compile` and FSDP2
(`fully_shard` per decoder layer, then the root) to the untouched HF model. With one process
the model is not wrapped; every other step of the loop (batch slicing, reductions,
checkpoints) is the same code.
"""

from __future__ import annotations

import torch

from regrow.errors import RegrowError
from regrow.world import World


def decoder_layers(model) -> list[torch.nn.Module]:
    """The repeated blocks of an HF model, found by the classes it declares unsplittable."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise RegrowError(f"cannot find the decoder layers of {type(model).__name__} (its _no_split_modules is {sorted(names)})")
    return layers


def parallelize(model, world: World, precision: str, activation_checkpointing: bool, compile_layers: bool):
    """Activation checkpointing, per-layer compile, then FSDP2 over all processes (when more than one)."""
    if activation_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    layers = decoder_layers(model)
    if compile_layers:
        for layer in layers:
            layer.compile()
    if not world.distributed:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (world.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if precision == "bf16" else MixedPrecisionPolicy()
    for index, layer in enumerate(layers):
        # the last layer's parameters are needed again at once by the backward pass: keep them
        fully_shard(layer, mesh=mesh, mp_policy=policy, reshard_after_forward=index < len(layers) - 1)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def full_norm(norm: torch.Tensor) -> float:
    """A gradient norm as a float (FSDP2 returns a DTensor)."""
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
