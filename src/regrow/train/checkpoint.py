"""Checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint folder `checkpoints/step_00000100/` holds `shards/`, the model and optimizer state
as a torch.distributed.checkpoint (DCP) folder written by every rank, which loads back into any
number of processes (2 -> 1, 1 -> 2, 8 -> 64); the gathered model and tokenizer as an HF folder
(so it can be a `model.init` too); `rng.pt`, `state.json` (step, sampler weights, the
phase-start evaluation, ...) and the resolved `config.yaml`. It is written under a temporary
name and renamed, so a kill during a save leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from regrow.atomic import write_json_atomic
from regrow.config import write_yaml_atomic
from regrow.errors import RegrowError
from regrow.models.hf import write_model_files
from regrow.world import World

SHARDS = "shards"

_NAME = re.compile(r"^step_(\d{8})$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first (temporary folders are ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(
    root: str | Path,
    step: int,
    model,
    tokenizer,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    config: dict[str, Any],
    keep: int,
    world: World,
) -> Path:
    """Every rank writes its shards; rank 0 adds the HF folder and the run state, then publishes."""
    root = Path(root)
    final = root / checkpoint_name(step)
    tmp = root / f".{final.name}.tmp"  # one name all ranks agree on
    if world.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    world.barrier()
    try:
        model_state, optim_state = get_state_dict(model, optimizer)
        with _one_process_is_fine():
            dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=tmp / SHARDS)
        full = gathered_state_dict(model)
        if world.is_main:
            write_model_files(model, tokenizer, tmp, full)  # an HF folder too: usable as model.init
            torch.save(_rng_state(), tmp / "rng.pt")
            write_yaml_atomic(tmp / "config.yaml", config)
            write_json_atomic(tmp / "state.json", {**state, "world_size": world.world_size})  # last: marks it complete
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in list_checkpoints(root)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
            for leftover in root.glob(".step_*.tmp"):
                shutil.rmtree(leftover, ignore_errors=True)
    except BaseException:
        if world.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    world.barrier()
    return final


def gathered_state_dict(model) -> dict[str, torch.Tensor]:
    """The full (unsharded) weights on rank 0's CPU; an empty dict on the other ranks."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def check_shards(folder: str | Path) -> Path:
    """The sharded state of a checkpoint, checked complete: every file its metadata names is
    there and long enough. Names what is missing or truncated."""
    shards = Path(folder) / SHARDS
    if not (shards / ".metadata").is_file():
        raise RegrowError(f"checkpoint {str(folder)!r} has no sharded state ({SHARDS}/.metadata is missing)")
    try:
        metadata = dcp.FileSystemReader(str(shards)).read_metadata()
    except Exception as err:  # a damaged pickle can raise anything
        raise RegrowError(f"checkpoint {str(folder)!r}: {SHARDS}/.metadata is corrupt ({type(err).__name__})") from err
    needed: dict[str, int] = {}
    for info in (metadata.storage_data or {}).values():
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    missing = sorted(name for name in needed if not (shards / name).is_file())
    if missing:
        raise RegrowError(f"checkpoint {str(folder)!r} is missing shard files: {', '.join(missing)}")
    short = sorted(name for name, size in needed.items() if (shards / name).stat().st_size < size)
    if short:
        raise RegrowError(f"checkpoint {str(folder)!r} has truncated shard files: {', '.join(short)}")
    return shards


def load_checkpoint(folder: str | Path, model, optimizer: torch.optim.Optimizer, weights: bool = True) -> None:
    """Load the sharded weights (and optimizer state) into a model sharded over any number of
    processes: DCP re-shards what another world size saved."""
    shards = check_shards(folder)
    model_state, optim_state = get_state_dict(model, optimizer)
    wanted = {"model": model_state, "optim": optim_state} if weights else {"optim": optim_state}
    with _one_process_is_fine():
        dcp.load(wanted, checkpoint_id=shards)
    set_state_dict(model, optimizer, model_state_dict=model_state if weights else {}, optim_state_dict=optim_state)


def load_optimizer(optimizer: torch.optim.Optimizer, model, folder: str | Path) -> None:
    """The optimizer state of a regrow checkpoint used as model.init (weights come from its HF files)."""
    if not (Path(folder) / SHARDS).is_dir():
        raise RegrowError(
            f"train.load_optimizer is set but {str(folder)!r} has no optimizer state; point model.init at a "
            "regrow checkpoint folder (out_dir/checkpoints/step_N)"
        )
    load_checkpoint(folder, model, optimizer, weights=False)


@contextlib.contextmanager
def _one_process_is_fine():
    """DCP warns when used without a process group; for a one-process run that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _rng_state() -> dict:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def load_rng(folder: str | Path) -> None:
    rng = torch.load(Path(folder) / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def load_state(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "state.json").read_text())
