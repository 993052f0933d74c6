"""Devices and numeric precision, shared by training, pruning and evaluation (below all of them)."""

from __future__ import annotations

import contextlib

import torch

from regrow.errors import RegrowError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when there is one, else cpu; `cuda` without one is refused."""
    if name not in DEVICES:
        raise RegrowError(f"device {name!r} is not supported; allowed: {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RegrowError("device is 'cuda' but no CUDA device is available; allowed here: auto, cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on `device` for `precision: bf16`, else a no-op context."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
