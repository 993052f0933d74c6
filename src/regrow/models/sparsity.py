"""Sparsity masks: which weights of a model are held at zero (`sparsity_mask.safetensors`).

The file holds one boolean tensor per sparse weight, True = kept, named as the model's
parameter. Pruning writes it beside the model; training reads it (`train.sparsity_mask`, or
found beside `model.init`) and holds the pattern: after every optimizer step the masked
weights and their AdamW moments are set to zero again (ALGORITHMS.md section 10).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from regrow.errors import RegrowError

MASK_FILE = "sparsity_mask.safetensors"


def read_mask_file(path: str | Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks of `path`, each checked against the model's parameter of that name (boolean,
    same shape)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise RegrowError(f"sparsity mask {str(path)!r} does not exist")
    try:
        masks = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise RegrowError(f"sparsity mask {str(path)!r} is not a readable safetensors file: {err}") from err
    shapes = {name: tuple(p.shape) for name, p in named_parameters(model).items()}
    for name, mask in masks.items():
        if name not in shapes:
            raise RegrowError(f"sparsity mask {str(path)!r} has tensor {name!r}, which the model does not have")
        if mask.dtype != torch.bool or tuple(mask.shape) != shapes[name]:
            raise RegrowError(f"sparsity mask {str(path)!r}: tensor {name!r} is {mask.dtype} {tuple(mask.shape)}, the "
                              f"model's weight is {shapes[name]}; a mask must be boolean and of the weight's shape")
    if not masks:
        raise RegrowError(f"sparsity mask {str(path)!r} holds no tensor")
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor], optimizer=None) -> None:
    """Zero the masked weights (and, with an optimizer, their state: AdamW's moments). Works on
    plain and FSDP2-sharded parameters (the mask is cut like the parameter's local shard)."""
    params = named_parameters(model)
    for name, mask in masks.items():
        param = params[name]
        local, keep = _local(param), mask
        if local is not param:  # a DTensor shard: this rank's rows of the mask
            from torch.distributed.tensor import distribute_tensor

            keep = distribute_tensor(mask.to(local.device), param.device_mesh, param.placements).to_local()
        keep = keep.to(local.device)
        local.mul_(keep)
        if optimizer is not None:
            for value in optimizer.state.get(param, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == param.shape:
                    _local(value).mul_(keep)


def named_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters by their name in the saved model (a compiled layer's `_orig_mod.` left out)."""
    return {name.replace("_orig_mod.", ""): param for name, param in model.named_parameters()}


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor
