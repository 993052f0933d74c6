"""Sparsity masks: which weights of a model are held at zero (`sparsity_mask.safetensors`).

The file holds one boolean tensor per sparse weight, True = kept, named as the model's
parameter. Pruning writes it beside the model; training reads it (`train.sparsity_mask`, or
found beside `model.init`) and holds the pattern: after every optimizer step the masked
weights and their AdamW moments are set to zero again (docs/ALGORITHMS.md §10).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from regrow.errors import RegrowError

MASK_FILE = "sparsity_mask.safetensors"
WEIGHTS_KEY, MODEL_KEY = "regrow.masked_weights", "regrow.model"  # header metadata


def read_mask_file(path: str | Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks of `path`, checked against the model: made for a model of this shape (the file
    records it), covering exactly the weights it was made for (it records their names: none
    missing, none added), each boolean and of its weight's shape."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise RegrowError(f"sparsity mask {str(path)!r} does not exist")
    try:
        masks = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
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
    try:
        weights, made_for = json.loads(metadata[WEIGHTS_KEY]), json.loads(metadata[MODEL_KEY])
    except (KeyError, ValueError):
        raise RegrowError(f"sparsity mask {str(path)!r} does not record the model and weights it was made for (it was "
                          "not written by `regrow prune`); prune again to get one") from None
    current = _signature(model)
    differ = sorted(k for k in set(made_for) | set(current) if made_for.get(k) != current.get(k))
    if differ:
        raise RegrowError(f"sparsity mask {str(path)!r} was made for another model: "
                          + ", ".join(f"{k} {made_for.get(k)} there, {current.get(k)} here" for k in differ[:4]))
    missing, extra = sorted(set(weights) - set(masks)), sorted(set(masks) - set(weights))
    if missing or extra:
        names = (f"{len(missing)} missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})" if missing
                 else f"{len(extra)} not made for it ({', '.join(extra[:3])})")
        raise RegrowError(f"sparsity mask {str(path)!r} does not cover the weights it was made for: {names}")
    return masks


def write_mask_file(path: Path, masks: dict[str, torch.Tensor], model: nn.Module) -> None:
    """The masks, with the model's shape and the names of the masked weights in the header."""
    from safetensors.torch import save_file

    metadata = {WEIGHTS_KEY: json.dumps(sorted(masks)), MODEL_KEY: json.dumps(_signature(model))}
    save_file({name: mask.cpu().contiguous() for name, mask in masks.items()}, str(path), metadata=metadata)


def _signature(model: nn.Module) -> dict:
    from regrow.models.hf import (
        shape_signature,  # hf writes masks too: imported here, not at the top
    )

    return {k: v for k, v in shape_signature(model.config).items() if v is not None}


class HeldMasks:
    """A sparsity pattern held through training. Each mask is cut once to its parameter's local
    shard (FSDP2: the rows this rank holds) and placed on its device; `apply` zeroes the masked
    weights and, given the optimizer, their state (AdamW's moments)."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor], path: Path):
        self.masks, self.path = masks, path  # full masks on the CPU: what an export writes beside the weights
        params = named_parameters(model)
        self._held: list[tuple[nn.Parameter, torch.Tensor]] = []
        for name, mask in masks.items():
            param = params[name]
            keep = mask
            if _local(param) is not param:  # a DTensor: this rank's shard of the mask
                from torch.distributed.tensor import distribute_tensor

                # every rank holds the whole mask: each cuts its own shard, nothing is sent (src_data_rank=None)
                keep = distribute_tensor(mask.to(_local(param).device), param.device_mesh, param.placements,
                                         src_data_rank=None).to_local()
            self._held.append((param, keep.to(_local(param).device)))

    @property
    def zeros(self) -> int:
        return sum(int((~mask).sum()) for mask in self.masks.values())

    @property
    def weights(self) -> int:
        return sum(mask.numel() for mask in self.masks.values())

    @torch.no_grad()
    def mask_gradients(self) -> None:
        """Zero the gradients of masked weights, before clipping: a weight held at zero takes no part
        in the gradient norm (clipped or logged), as if the model never had it."""
        for param, keep in self._held:
            if param.grad is not None:
                _local(param.grad).mul_(keep)

    @torch.no_grad()
    def apply(self, optimizer=None) -> None:
        for param, keep in self._held:
            _local(param).mul_(keep)
            if optimizer is not None:
                for value in optimizer.state.get(param, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == param.shape:
                        _local(value).mul_(keep)


def named_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters by their name in the saved model (a compiled layer's `_orig_mod.` left out)."""
    return {name.replace("_orig_mod.", ""): param for name, param in model.named_parameters()}


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor
