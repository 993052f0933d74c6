"""Who this process is among the processes of a run, and the few collectives regrow needs.

torchrun (and Slurm launchers that export the same variables) sets RANK, WORLD_SIZE and
LOCAL_RANK; with more than one process `start()` joins the process group (NCCL on CUDA, gloo on
CPU). With one process every method is a cheap no-op, so callers never branch on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from regrow.errors import RegrowError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise RegrowError(f"environment variable {name}={value!r} is not an integer (torchrun sets it)") from None


@dataclass(frozen=True)
class World:
    """Who this process is among the processes of a run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> World:
        world = cls(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
        if world.world_size < 1 or not 0 <= world.rank < world.world_size:
            raise RegrowError(f"RANK={world.rank} WORLD_SIZE={world.world_size}: need 0 <= RANK < WORLD_SIZE")
        return world

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This process's device: CUDA ranks of one node take one GPU each (LOCAL_RANK)."""
        if device.type == "cuda" and self.distributed:
            return torch.device("cuda", self.local_rank)
        return device

    def start(self, device: torch.device) -> None:
        """Join the process group (no-op for one process or when already joined)."""
        if not self.distributed or dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")

    def stop(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over all processes, in place."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def mean(self, value: torch.Tensor) -> float:
        return float(self.sum_(value.detach().clone().double())) / self.world_size


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def rank_batch(global_batch: int, batch_size: int, world_size: int,
               source: str = "train.batch_size x train.grad_accum") -> tuple[int, int]:
    """(micro-batch, accumulation steps) of each rank so that the global batch stays the recipe's.

    The recipe's global batch is `train.batch_size x train.grad_accum` sequences per optimizer
    step, whatever the number of processes; each rank takes `global / world_size` of them in
    micro-batches of at most `train.batch_size` sequences (the largest divisor that fits).
    """
    if global_batch % world_size:
        allowed = ", ".join(str(d) for d in divisors(global_batch))
        raise RegrowError(
            f"world size {world_size} does not divide the global batch of {global_batch} sequences "
            f"({source}); allowed world sizes: {allowed}"
        )
    per_rank = global_batch // world_size
    micro = max(d for d in divisors(per_rank) if d <= batch_size)
    return micro, per_rank // micro
