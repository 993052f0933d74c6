"""How a run's model is spread over its processes, as torchtitan does: activation checkpointing
and per-layer `torch.compile` on the untouched HF model, then FSDP2 (models/sharded.py). With one
process the model is not wrapped; every other step of the loop (batch slicing, reductions,
checkpoints) is the same code.
"""

from __future__ import annotations

import torch

from regrow.models.sharded import decoder_layers, shard
from regrow.world import World

__all__ = ["decoder_layers", "full_norm", "parallelize", "prepare"]


def prepare(model, activation_checkpointing: bool, compile_layers: bool) -> None:
    """Activation checkpointing and per-layer compile (before sharding; the model may be empty)."""
    if activation_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if compile_layers:
        for layer in decoder_layers(model):
            layer.compile()


def parallelize(model, world: World, device: torch.device, precision: str, activation_checkpointing: bool,
                compile_layers: bool):
    """Activation checkpointing, per-layer compile, then FSDP2 over all processes (when more than one)."""
    prepare(model, activation_checkpointing, compile_layers)
    return shard(model, world, device, precision)


def full_norm(norm: torch.Tensor) -> float:
    """A gradient norm as a float (FSDP2 returns a DTensor)."""
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
