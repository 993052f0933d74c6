"""Checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint folder `checkpoints/step_00000100/` holds the model and tokenizer as an HF folder
(so it can be a `model.init` too), `optimizer.pt`, `rng.pt`, `state.json` (step, sampler weights, the
phase-start evaluation, ...) and the resolved `config.yaml`. It is written under a temporary
name and renamed, so a kill during a save leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from regrow.atomic import atomic_dir, write_json_atomic
from regrow.config import write_yaml_atomic
from regrow.errors import RegrowError

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
) -> Path:
    root = Path(root)
    final = root / checkpoint_name(step)
    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        write_yaml_atomic(tmp / "config.yaml", config)
        write_json_atomic(tmp / "state.json", state)  # written last: marks the folder complete
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in root.glob(".step_*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    return final


def load_weights(model, folder: str | Path) -> None:
    """Copy the safetensors weights of an HF folder into `model` (tied weights share one tensor)."""
    folder = Path(folder)
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        raise RegrowError(f"checkpoint {str(folder)!r} has no safetensors weights")
    loaded: set[str] = set()
    for file in files:
        tensors = load_file(file)
        model.load_state_dict(tensors, strict=False)
        loaded.update(tensors)
    expected = set(model.state_dict())
    missing = expected - loaded
    tied = {name for name in missing if _is_tied(model, name)}
    if missing - tied:
        raise RegrowError(f"checkpoint {str(folder)!r} lacks weights: {', '.join(sorted(missing - tied)[:5])}")


def _is_tied(model, name: str) -> bool:
    head = model.get_output_embeddings()
    return head is not None and head.weight is model.get_input_embeddings().weight and name.endswith("weight") and (
        name.startswith("lm_head") or name.startswith("embed_out")
    )


def load_optimizer(optimizer: torch.optim.Optimizer, folder: str | Path) -> None:
    path = Path(folder) / "optimizer.pt"
    if not path.is_file():
        raise RegrowError(
            f"train.load_optimizer is set but {str(folder)!r} has no optimizer.pt; point model.init at a "
            "regrow checkpoint folder (out_dir/checkpoints/step_N)"
        )
    optimizer.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))


def load_rng(folder: str | Path) -> None:
    rng = torch.load(Path(folder) / "rng.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def load_state(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "state.json").read_text())
