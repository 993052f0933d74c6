"""Lottery-ticket rewinding (`--reinit rewind --rewind-from SNAPSHOT`, docs/ALGORITHMS.md §10):
the mask is found on the trained model, then the weights of an earlier snapshot of the same run
replace the trained ones before slicing (structured methods: the kept units' early weights) or
masking (sparse methods: the mask applied to the early weights)."""

from __future__ import annotations

import torch
from torch import nn

from regrow.errors import RegrowError
from regrow.models.hf import load_model


@torch.no_grad()
def rewind_weights(model: nn.Module, snapshot: str, trust_remote_code: bool = False) -> None:
    """Replace every weight of `model` by the snapshot's (the same architecture), in place."""
    early = load_model(snapshot, trust_remote_code).state_dict()
    for name, tensor in model.state_dict().items():
        if name not in early or early[name].shape != tensor.shape:
            found = tuple(early[name].shape) if name in early else "missing"
            raise RegrowError(f"--rewind-from {snapshot!r} is not a snapshot of this model: {name} is {found}, the "
                              f"model's is {tuple(tensor.shape)}")
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    for name, tensor in early.items():
        target = params.get(name, buffers.get(name))
        if target is not None:
            target.copy_(tensor.to(target.device, target.dtype))
