"""`regrow prune --streaming`: prune a checkpoint larger than memory, one layer at a time.

The same steps as the in-memory run (prune.py) on a model that is never whole: shapes come
from the config on the meta device, the method scores units from tensors read lazily
(magnitude) or from a layer-by-layer calibration (activation, depth), the shared selection
picks exactly the target shape, and the pruned checkpoint is written one shard per kept
layer (and one each for the embedding and the LM head). Peak memory is a layer plus the
calibration activations, which go to disk when they exceed `activation_memory_gb`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from regrow.atomic import atomic_dir, write_json_atomic
from regrow.compress.calibration import calibration_sampler
from regrow.compress.config import PruneConfig
from regrow.compress.families import adapter_for
from regrow.compress.layerwise import LayerwiseModel
from regrow.compress.masks import Masks
from regrow.compress.methods import METHODS, PruneContext
from regrow.compress.report import CONFIG, REPORT, pruning_flops, pruning_report
from regrow.compress.select import select
from regrow.compress.slicing import KeptUnits, prune_tensor
from regrow.compress.targets import checked_target, count_parameters
from regrow.config import to_dict, write_yaml_atomic
from regrow.data.tokenizer import load_tokenizer_if_any
from regrow.errors import RegrowError
from regrow.models.lazy import INDEX, LazyCheckpoint
from regrow.resources import peak_rss_bytes, return_freed_memory_promptly
from regrow.train.trainer import resolve_device

GiB = 1 << 30


def streaming_methods() -> list[str]:
    return [name for name, cls in METHODS.items() if cls.streams]


def check_streaming(cfg: PruneConfig) -> None:
    """Refuse what cannot stream, before any work."""
    allowed = streaming_methods()
    if cfg.method not in allowed:
        raise RegrowError(f"--streaming cannot run method {cfg.method!r}: it needs gradients through the whole model; "
                          f"methods that can stream: {', '.join(allowed)}")
    if cfg.reinit != "none":
        raise RegrowError(f"--streaming writes the pruned weights as they are; --reinit {cfg.reinit!r} needs the model "
                          "in memory: prune with --streaming, then re-initialise the (smaller) result; allowed: none")
    if cfg.activation_memory_gb < 0:
        raise RegrowError(f"activation_memory_gb is {cfg.activation_memory_gb}; it must be >= 0")


def meta_model(config):
    """The model's module tree and parameter shapes, with no memory behind them."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def _parameters(meta, checkpoint: LazyCheckpoint) -> list[str]:
    """The model's parameters (a tied head once), all of which the checkpoint must hold."""
    names = [name for name, _ in meta.named_parameters()]
    missing = [n for n in names if n not in checkpoint.shapes]
    if missing:
        raise RegrowError(f"model folder {str(checkpoint.folder)!r} lacks weights: {', '.join(missing[:5])}")
    wrong = [n for n in names if list(dict(meta.named_parameters())[n].shape) != checkpoint.shapes[n]]
    if wrong:
        raise RegrowError(f"weights of {str(checkpoint.folder)!r} do not match its config.json: {', '.join(wrong[:5])}")
    return names


def _compute_dtype(cfg: PruneConfig, checkpoint: LazyCheckpoint) -> torch.dtype:
    """float32 (as the in-memory path computes), or with `precision: bf16` a bf16 checkpoint's
    own weights (no float32 copy of a layer)."""
    stored = {d for d in checkpoint.dtypes.values() if d.is_floating_point}
    return torch.bfloat16 if cfg.precision == "bf16" and stored == {torch.bfloat16} else torch.float32


def _rows_pruned(checkpoint: LazyCheckpoint, name: str, axes, kept: KeptUnits, index: int | None) -> torch.Tensor:
    """A tensor whose unit axes are all columns (an embedding, an LM head), pruned block of rows by block."""
    out, start = None, 0
    for block in checkpoint.row_chunks(name):
        piece = prune_tensor(block, axes, kept, index, fold=False)
        if out is None:
            out = torch.empty((checkpoint.shapes[name][0], *piece.shape[1:]), dtype=piece.dtype)
        out[start : start + len(piece)] = piece
        start += len(piece)
    return out


def write_pruned(checkpoint: LazyCheckpoint, names: list[str], adapter, source, masks: Masks, folder: Path) -> dict:
    """The pruned tensors and their index: one safetensors shard per kept layer, one each for the
    embedding and the LM head (the largest tensors: one of them in memory at a time), one for the
    small rest."""
    kept = KeptUnits(masks, source)
    new_index = {old: new for new, old in enumerate(kept.layers)}
    large = {f"{adapter.embedding}.weight", f"{adapter.lm_head}.weight"}
    groups: dict[tuple, list[str]] = {}
    for name in names:
        index, _, _ = adapter.parameter_axes(name, source.head_dim)
        if index is None:
            groups.setdefault(("outer", name if name in large else None), []).append(name)
        elif index in new_index:
            groups.setdefault(("layer", index), []).append(name)
    files = len(groups)
    weight_map, total = {}, 0
    for number, ((kind, key), group) in enumerate(groups.items(), start=1):
        index = key if kind == "layer" else None
        shard = f"model-{number:05d}-of-{files:05d}.safetensors"
        out = {}
        for name in group:
            _, rel, axes = adapter.parameter_axes(name, source.head_dim)
            new_name = name if index is None else f"{adapter.layers_path}.{new_index[index]}.{rel}"
            if all(axis.dim > 0 for axis in axes):  # rows are independent: slice block by block (embeddings)
                out[checkpoint.disk_name(new_name)] = _rows_pruned(checkpoint, name, axes, kept, index)
            else:
                tensor = checkpoint.read([name])[name]
                out[checkpoint.disk_name(new_name)] = prune_tensor(tensor, axes, kept, index, fold=False).contiguous()
                del tensor
        save_file(out, folder / shard, metadata={"format": "pt"})
        for new_name, tensor in out.items():
            weight_map[new_name] = shard
            total += tensor.numel() * tensor.element_size()
        del out
    (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    return {"files": files, "bytes": total}


def prune_streaming(cfg: PruneConfig, echo: Callable[[str], None] = print) -> dict:
    """One pruning run on a checkpoint read lazily; returns the report (also pruning_report.json)."""
    from transformers import AutoConfig

    check_streaming(cfg)
    return_freed_memory_promptly()
    started = time.perf_counter()
    checkpoint = LazyCheckpoint(cfg.model)
    try:
        config = AutoConfig.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError, KeyError) as err:
        raise RegrowError(f"config.json of {cfg.model!r} could not be read: {str(err).splitlines()[0]}") from err
    meta = meta_model(config)
    checkpoint.bind(meta)
    adapter = adapter_for(config)
    adapter.check_model(meta)
    source = adapter.shape(config)
    names = _parameters(meta, checkpoint)
    target = checked_target(meta, adapter, cfg.target, cfg.target_ratio, depth_only=cfg.method == "depth")
    method = METHODS[cfg.method]()
    method.check_target(source, target)
    n_source, n_target = count_parameters(meta, adapter, source), count_parameters(meta, adapter, target)
    echo(f"source: {source.describe()}; {n_source:,} parameters; {checkpoint.nbytes() / GiB:.2f} GiB on disk (streaming)")
    echo(f"target: {target.describe()}; {n_target:,} parameters ({n_target / n_source:.1%})")

    tokenizer = load_tokenizer_if_any(cfg.model, cfg.trust_remote_code)
    sampler, mixture = calibration_sampler(cfg, tokenizer, meta) if method.needs_data else (None, {})
    device = resolve_device(cfg.device)

    out = Path(cfg.out)
    with atomic_dir(out) as tmp:
        scratch = tmp / ".activations"
        scratch.mkdir()
        layerwise = None
        if method.needs_data:
            layerwise = LayerwiseModel(checkpoint, config, adapter, device, int(cfg.activation_memory_gb * GiB), scratch,
                                       _compute_dtype(cfg, checkpoint))
        ctx = PruneContext(None, adapter, source, target, cfg, device, sampler, checkpoint, layerwise, names)
        scoring_started = time.perf_counter()
        result = method.run(ctx)
        scoring_seconds = time.perf_counter() - scoring_started
        activations = "disk" if layerwise is not None and layerwise.on_disk else "memory"
        del ctx, layerwise
        shutil.rmtree(scratch)

        masks = select(result.scores, source, target, result.values)
        written = write_pruned(checkpoint, names, adapter, source, masks, tmp)
        new_config = adapter.target_config(config, target, KeptUnits(masks, source).layers)
        new_config.save_pretrained(tmp)
        for extra in ("generation_config.json",):
            if (checkpoint.folder / extra).is_file():
                shutil.copy(checkpoint.folder / extra, tmp / extra)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        report = {
            **pruning_report(cfg, source, target, n_source, n_target, mixture, result,
                             pruning_flops(meta, cfg, result.details), masks),
            "exactness": {"checked": False, "reason": "streaming: the model is never whole in memory"},
            "streaming": {"source_bytes": checkpoint.nbytes(), "written": written, "activations": activations,
                          "peak_rss_bytes": peak_rss_bytes()},
            "wall_seconds": {"scoring": scoring_seconds, "total": time.perf_counter() - started},
        }
        write_yaml_atomic(tmp / CONFIG, to_dict(cfg))
        write_json_atomic(tmp / REPORT, report)
    echo(f"kept layers {report['kept']['layers']}; activations in {activations}; "
         f"peak RSS {report['streaming']['peak_rss_bytes'] / GiB:.2f} GiB")
    echo(f"wrote {out} ({n_target:,} parameters, {written['files']} shards) in {report['wall_seconds']['total']:.1f} s")
    return report
