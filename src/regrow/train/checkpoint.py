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
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.state_dict import (
    get_state_dict,
    set_state_dict,
)

from regrow.atomic import os_error_of, write_json_atomic
from regrow.config import write_yaml_atomic
from regrow.errors import RegrowError, find_cause
from regrow.models.hf import write_model_files
from regrow.models.sharded import gathered_state_dict
from regrow.pause_points import pause_point
from regrow.reading import read_json
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
        pause_point("checkpoint-shards")
        full = gathered_state_dict(model)
        if world.is_main:
            write_model_files(model, tokenizer, tmp, full)  # an HF folder too: usable as model.init
            torch.save(_rng_state(), tmp / "rng.pt")
            write_yaml_atomic(tmp / "config.yaml", config)
            sealed = seal_state({**state, "world_size": world.world_size, "optimizer_step": optimizer_step(optimizer)})
            write_json_atomic(tmp / "state.json", sealed)  # last: marks it complete
            if final.exists():
                _delete(final)
            os.replace(tmp, final)
            remove_old(root, keep)
    except BaseException as err:
        if world.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        os_error = None if isinstance(err, (KeyboardInterrupt, SystemExit)) else os_error_of(err, final)
        if os_error is not None and os_error is not err:
            raise os_error from err  # a full disk or a read-only folder: exit 1 naming the checkpoint
        raise
    world.barrier()
    return final


def _delete(folder: Path) -> None:
    """Rename, then remove: a kill half-way leaves a hidden `.tmp` folder, never a half checkpoint."""
    doomed = folder.with_name(f".{folder.name}.del.tmp")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def remove_old(root: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints; drop temporary and incomplete folders (no state.json)."""
    for old in list_checkpoints(root)[:-keep]:
        _delete(old)
    for leftover in root.glob(".step_*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    for path in root.glob("step_*"):
        if path.is_dir() and _NAME.match(path.name) and not (path / "state.json").is_file():
            shutil.rmtree(path, ignore_errors=True)


def remove_leftovers(out: Path, keep: int) -> None:
    """What a kill can leave in a run folder: temporary folders and files of atomic writes
    (`.model.*.tmp`, `.config.yaml.*.tmp`, ...), incomplete checkpoints, one checkpoint too many."""
    for pattern in (".*.tmp", "snapshots/.*.tmp"):
        for leftover in out.glob(pattern):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
    if (out / "checkpoints").is_dir():
        remove_old(out / "checkpoints", keep)


# What DCP's `.metadata` pickle is made of (torch 2.4 - 2.13); nothing else may be built from it.
_METADATA_CLASSES = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata", "TensorProperties",
        "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    """An unpickler that builds only DCP metadata classes (and torch dtypes): a crafted
    `.metadata` cannot run code; it fails with UnpicklingError naming the class it asked for."""

    def find_class(self, module: str, name: str):
        if name in _METADATA_CLASSES.get(module, ()):
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which DCP metadata never holds")


def read_metadata_safely(path: Path):
    try:
        return _MetadataUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as err:  # noqa: BLE001  (a damaged or crafted pickle can raise anything)
        detail = str(err) if isinstance(err, pickle.UnpicklingError) else type(err).__name__
        raise RegrowError(f"{str(path)!r} is corrupt or not DCP metadata: {detail}") from err


class _SafeReader(dcp.FileSystemReader):
    """DCP's file reader with the metadata read by the restricted unpickler."""

    def read_metadata(self, *args: Any, **kwargs: Any):
        metadata = read_metadata_safely(Path(self._get_metadata_path(kwargs.get("rank"))))
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = dcp.metadata.StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata

    def _slice_file(self, file, sinfo):
        self.reading = sinfo.relative_path  # the shard file an error while reading belongs to
        return super()._slice_file(file, sinfo)


class _SafePlanner(DefaultLoadPlanner):
    """DCP's load planner with non-tensor entries (optimizer step counts, hyper-parameters) read
    by `torch.load(weights_only=True)`; the default planner unpickles them without limits."""

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        try:
            loaded = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as err:
            raise RegrowError(f"a checkpoint entry {read_item.dest_index.fqn!r} holds objects that are not plain "
                              f"data; refused ({str(err).splitlines()[0]})") from err
        if self.flatten_state_dict:
            from torch.distributed.checkpoint._nested_dict import set_element

            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded


def _dcp_load(state: dict, shards: Path) -> None:
    reader = _SafeReader(str(shards))
    reader.reading = None
    try:
        with _one_process_is_fine():
            dcp.load(state, storage_reader=reader, planner=_SafePlanner())
    except (RegrowError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # noqa: BLE001  (DCP's CheckpointException is a BaseException; a damaged file fails in many ways)
        regrow_error = find_cause(err, lambda e: isinstance(e, RegrowError))
        if regrow_error is not None:
            raise regrow_error from None
        where = shards / reader.reading if reader.reading else shards
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise RegrowError(f"checkpoint shard file {str(where)!r} is damaged: its contents cannot be read ({first}); "
                          "resume from another checkpoint") from err


def check_shards(folder: str | Path) -> Path:
    """The sharded state of a checkpoint, checked complete: every file its metadata names is
    there and long enough. Names what is missing or truncated."""
    shards = Path(folder) / SHARDS
    if not (shards / ".metadata").is_file():
        raise RegrowError(f"checkpoint {str(folder)!r} has no sharded state ({SHARDS}/.metadata is missing)")
    metadata = read_metadata_safely(shards / ".metadata")
    if not hasattr(metadata, "storage_data"):
        raise RegrowError(f"{str(shards / '.metadata')!r} is not DCP metadata")
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
    _dcp_load(wanted, shards)
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
    path = Path(folder) / "rng.pt"
    try:
        rng = torch.load(path, weights_only=True)
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
    except FileNotFoundError as err:
        raise RegrowError(f"checkpoint {str(folder)!r} lacks rng.pt") from err
    except Exception as err:  # noqa: BLE001  (weights_only refusals, truncation, wrong contents)
        reason = str(err).splitlines()[0][:200] if isinstance(err, pickle.UnpicklingError) else type(err).__name__
        raise RegrowError(f"{str(path)!r} is corrupt or not regrow's RNG state: {reason}") from err


STATE_KEYS = ("step", "sampler", "phase_start_eval", "elapsed_seconds", "domain_tokens", "eval_tokens",
              "dynamic_reference")


def _digest(state: dict[str, Any]) -> str:
    body = {k: v for k, v in state.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal_state(state: dict[str, Any]) -> dict[str, Any]:
    """The run state with a checksum over its contents (as JSON will read them back), so an
    edited or damaged state.json is refused instead of trusted on resume."""
    state = json.loads(json.dumps(state))
    return {**state, "checksum": _digest(state)}


def optimizer_step(optimizer: torch.optim.Optimizer) -> int:
    """The updates AdamW has made (its per-parameter step count; 0 before the first)."""
    for param_state in optimizer.state.values():
        step = param_state.get("step")
        if step is not None:
            return int(step.item() if isinstance(step, torch.Tensor) else step)
    return 0


def load_state(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "state.json"
    state = read_json(path, "checkpoint state", STATE_KEYS)
    if state.get("checksum") != _digest(state):
        raise RegrowError(f"checkpoint state {str(path)!r} was edited or damaged: its checksum does not match its "
                          "contents; regrow resumes only from the state it wrote (resume from an earlier checkpoint)")
    if not isinstance(state["step"], int) or state["step"] < 0 or not isinstance(state["sampler"], dict):
        raise RegrowError(f"checkpoint state {str(path)!r} is damaged: bad step or sampler")
    return state


def check_optimizer_step(folder: str | Path, state: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """The optimizer state loaded from the shards must have made the updates state.json records
    (a state.json copied from another checkpoint is refused)."""
    loaded = optimizer_step(optimizer)
    if "optimizer_step" in state and loaded != state["optimizer_step"]:
        raise RegrowError(f"checkpoint {str(folder)!r} is inconsistent: state.json records {state['optimizer_step']} "
                          f"optimizer updates, its shards hold {loaded}; resume from another checkpoint")
