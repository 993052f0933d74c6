"""The pipeline's model access for `regrow prune --streaming`: a checkpoint larger than memory,
never whole. Shapes come from the config on the meta device, methods score units from tensors
read lazily (magnitude) or from a layer-by-layer calibration (activation, depth), the pruned
checkpoint is written one shard per kept layer (and one each for the embedding and the LM
head), and the exactness check runs layer by layer: every kept layer of the written model
against the masked source layer on the same probe input. Peak memory is a layer plus the
calibration activations, which go to disk when they exceed `activation_memory_gb`.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from regrow.compress.config import PruneConfig
from regrow.compress.importance import hidden_of
from regrow.compress.layerwise import LayerwiseModel
from regrow.compress.masks import Masks
from regrow.compress.methods import METHODS, PruneContext
from regrow.compress.slicing import KeptUnits, named_tensors, prune_tensor
from regrow.errors import RegrowError
from regrow.models.lazy import INDEX, LazyCheckpoint
from regrow.resources import peak_rss_bytes, return_freed_memory_promptly

GiB = 1 << 30


def check_streaming(cfg: PruneConfig) -> None:
    """Refuse what cannot stream, before any work."""
    allowed = METHODS.where(lambda method: method.streams)
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


def _tensors(meta, checkpoint: LazyCheckpoint) -> tuple[list[str], list[str]]:
    """(the model's parameters (a tied head once), its saved buffers), all of which the checkpoint must hold."""
    tensors = dict(named_tensors(meta))
    names = list(tensors)
    missing = [n for n in names if n not in checkpoint.shapes]
    if missing:
        raise RegrowError(f"model folder {str(checkpoint.folder)!r} lacks weights: {', '.join(missing[:5])}")
    extra = sorted(set(checkpoint.shapes) - set(meta.state_dict()))
    if extra:
        raise RegrowError(f"model folder {str(checkpoint.folder)!r} holds tensors its config.json's model does not "
                          f"have (another architecture's weights?): {', '.join(extra[:5])}")
    wrong = [n for n in names if list(tensors[n].shape) != checkpoint.shapes[n]]
    if wrong:
        raise RegrowError(f"weights of {str(checkpoint.folder)!r} do not match its config.json: {', '.join(wrong[:5])}")
    parameters = {name for name, _ in meta.named_parameters()}
    return [n for n in names if n in parameters], [n for n in names if n not in parameters]


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


class PrunedWriter:
    """The pruned checkpoint, shard by shard: one safetensors shard per kept layer, one each for
    the embedding and the LM head (the largest tensors: one of them in memory at a time), one for
    the small rest, and the index of the shards written so far. Outer tensors are read and sliced
    here; a layer is sliced from the full tensors the caller already holds (the layer check's
    load of the source layer), so each kept layer is read from the source once for both."""

    def __init__(self, checkpoint: LazyCheckpoint, names: list[str], adapter, source, masks: Masks, folder: Path,
                 tied: bool = False):
        self.checkpoint, self.adapter, self.source, self.folder, self.tied = checkpoint, adapter, source, folder, tied
        self.kept = KeptUnits(masks, source)
        self.new_index = {old: new for new, old in enumerate(self.kept.layers)}
        large = {f"{adapter.embedding}.weight", f"{adapter.lm_head}.weight"}
        self.groups: dict[tuple, list[str]] = {}
        for name in names:
            index, _, _ = adapter.parameter_axes(name, source)
            if index is None:
                self.groups.setdefault(("outer", name if name in large else None), []).append(name)
            elif index in self.new_index:
                self.groups.setdefault(("layer", index), []).append(name)
        files = len(self.groups)
        self.shard = {key: f"model-{number:05d}-of-{files:05d}.safetensors" for number, key in enumerate(self.groups, start=1)}
        self.weight_map: dict[str, str] = {}
        self.total = 0

    def write_outer(self) -> None:
        """The tensors outside the layers (embedding, LM head, final norm, ...)."""
        for key, group in self.groups.items():
            if key[0] != "outer":
                continue
            out = {}
            for name in group:
                _, _, axes = self.adapter.parameter_axes(name, self.source)
                if all(axis.dim > 0 for axis in axes):  # rows are independent: slice block by block (embeddings)
                    pruned = _rows_pruned(self.checkpoint, name, axes, self.kept, None)
                else:
                    pruned = prune_tensor(self.checkpoint.read([name])[name], axes, self.kept, None, fold=False)
                pruned = self.adapter.rescale(name, pruned, self.source.hidden_size, len(self.kept.hidden), self.tied)
                out.update(self.checkpoint.disk_tensors(name, pruned.contiguous()))
            self._save(key, out)

    def write_layer(self, index: int, tensors: dict[str, torch.Tensor]) -> None:
        """Source layer `index`, given as its full tensors (any float dtype: written in the source's)."""
        out = {}
        for name in self.groups[("layer", index)]:
            _, rel, axes = self.adapter.parameter_axes(name, self.source)
            tensor = tensors[name].to("cpu", self.checkpoint.dtypes[name])
            pruned = prune_tensor(tensor, axes, self.kept, index, fold=False).contiguous()
            out.update(self.checkpoint.disk_tensors(f"{self.adapter.layers_path}.{self.new_index[index]}.{rel}", pruned))
        self._save(("layer", index), out)

    def kept_rows(self, index: int) -> dict[str, torch.Tensor]:
        """For each tensor of source layer `index` with units on dim 0: the rows of it the pruned
        model keeps. Only those are read for writing and checking the layer: a removed row (a
        removed head's query, channel's gate, hidden dimension's output) is zero in the masked
        model's computation, so reading it as zero changes nothing there, and slicing drops it."""
        rows = {}
        for name in self.groups[("layer", index)]:
            _, _, axes = self.adapter.parameter_axes(name, self.source)
            on_rows = tuple(axis for axis in axes if axis.dim == 0)
            if on_rows:
                kept = prune_tensor(torch.arange(self.checkpoint.shapes[name][0]), on_rows, self.kept, index, fold=False)
                rows[name] = kept.unique()  # sorted
        return rows

    def _save(self, key: tuple, out: dict[str, torch.Tensor]) -> None:
        save_file(out, self.folder / self.shard[key], metadata={"format": "pt"})
        for new_name, tensor in out.items():
            self.weight_map[new_name] = self.shard[key]
            self.total += tensor.numel() * tensor.element_size()
        index = {"metadata": {"total_size": self.total}, "weight_map": self.weight_map}
        (self.folder / INDEX).write_text(json.dumps(index, indent=2) + "\n")

    def summary(self) -> dict:
        return {"files": len(self.groups), "bytes": self.total}


class StreamingModel:
    """The checkpoint on disk, read a tensor or a layer at a time."""

    kind = "streaming"

    @staticmethod
    def check(cfg: PruneConfig, method, world) -> None:
        check_streaming(cfg)
        if world.distributed:
            raise RegrowError(f"--streaming runs as one process (WORLD_SIZE={world.world_size}): it reads one layer "
                              "at a time; run it without torchrun")

    def __init__(self, cfg: PruneConfig, world, device):
        from transformers import AutoConfig

        return_freed_memory_promptly()
        self.cfg = cfg
        self.checkpoint = LazyCheckpoint(cfg.model)
        try:
            self.config = AutoConfig.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
        except (OSError, ValueError, KeyError) as err:
            raise RegrowError(f"config.json of {cfg.model!r} could not be read: {str(err).splitlines()[0]}") from err
        self.module = meta_model(self.config)
        self.config = self.module.config  # a multimodal checkpoint's (Qwen3.5's) is its text model's
        self.checkpoint.bind(self.module)
        self.names, self.buffers = _tensors(self.module, self.checkpoint)  # scored: parameters; written: both
        self.activations = "memory"

    def describe(self) -> str:
        return f"; {self.checkpoint.nbytes() / GiB:.2f} GiB on disk (streaming)"

    def _layerwise(self, checkpoint: LazyCheckpoint, config, adapter, device, scratch: Path, dtype) -> LayerwiseModel:
        return LayerwiseModel(checkpoint, config, adapter, device, int(self.cfg.activation_memory_gb * GiB), scratch, dtype)

    def context(self, adapter, source, target, device, sampler, world, tmp: Path) -> PruneContext:
        self.scratch = tmp / ".activations"
        self.scratch.mkdir()
        layerwise = None
        if sampler is not None:
            layerwise = self._layerwise(self.checkpoint, self.config, adapter, device, self.scratch,
                                        _compute_dtype(self.cfg, self.checkpoint))
        return PruneContext(None, adapter, source, target, self.cfg, device, sampler, self.checkpoint, layerwise,
                            self.names, world=world)

    def scored(self, ctx: PruneContext) -> None:
        if ctx.layerwise is not None and ctx.layerwise.on_disk:
            self.activations = "disk"
        shutil.rmtree(self.scratch)

    def write(self, adapter, masks: Masks, target, fold: bool, device, tmp: Path) -> dict:
        assert not fold, "streaming writes the kept weights as they are (no method that folds streams)"
        source = adapter.shape(self.config)
        writer = PrunedWriter(self.checkpoint, self.names + self.buffers, adapter, source, masks, tmp,
                              bool(getattr(self.config, "tie_word_embeddings", False)))
        writer.write_outer()
        new_config = adapter.target_config(self.config, target, KeptUnits(masks, source).layers)
        new_config.save_pretrained(tmp)
        for extra in ("generation_config.json",):
            if (self.checkpoint.folder / extra).is_file():
                shutil.copy(self.checkpoint.folder / extra, tmp / extra)
        exactness = self.write_and_check_layers(writer, adapter, masks, source, new_config, device, tmp)
        self.written = writer.summary()
        written = LazyCheckpoint(tmp)
        pruned = meta_model(new_config)
        written.bind(pruned)
        self.written_parameters = sum(math.prod(written.shapes[name]) for name, _ in pruned.named_parameters())
        return exactness

    @torch.no_grad()
    def write_and_check_layers(self, writer: PrunedWriter, adapter, masks: Masks, source, new_config, device,
                               tmp: Path) -> dict:
        """Each kept source layer is read once: sliced and written, then checked - the written
        layer, read back from its file, against the masked source layer on the same probe input
        (the pruned model's hidden state at that layer, placed in the kept hidden dimensions of
        the source width: the masked model's hidden state is exactly that). Removed layers are
        identities of the masked model (their gate is 0) and are never read."""
        from regrow.compress.inmemory import probe_ids
        from regrow.compress.masks import MaskHooks

        kept = KeptUnits(masks, source)
        scratch = tmp / ".check"
        original = self._layerwise(self.checkpoint, self.config, adapter, device, scratch / "source", torch.float32)
        written_meta = meta_model(new_config)

        def written() -> LazyCheckpoint:  # the shards written so far
            checkpoint = LazyCheckpoint(tmp)
            checkpoint.bind(written_meta)
            return checkpoint

        pruned = self._layerwise(written(), new_config, adapter, device, scratch / "pruned", torch.float32)
        ids = probe_ids(self.config.vocab_size, self.cfg.seed, device)
        no_autocast = contextlib.nullcontext
        _, inputs = original.embed([ids], 1, no_autocast)
        store, pruned_inputs = pruned.embed([ids], 1, no_autocast)
        hidden = store.get(0).to(device)
        hooks = [MaskHooks(skeleton, adapter) for skeleton in original.skeletons.values()]
        for hook in hooks:
            hook.final = True
        per_layer, outside = {}, 0.0
        try:
            for new_index, old_index in enumerate(kept.layers):
                full = hidden.new_zeros((*hidden.shape[:-1], source.hidden_size))
                full[..., kept.hidden] = hidden
                for hook in hooks:
                    hook.masks = masks.for_layer(old_index)
                pruned.release()  # the previous pruned layer: not held beside this source layer and its slices
                layer = original.load_layer(old_index, writer.kept_rows(old_index))
                writer.write_layer(old_index, {original.layer_prefix(old_index) + rel: param
                                               for rel, param in named_tensors(layer)})
                expected = hidden_of(inputs.run(layer, old_index, full))
                pruned.checkpoint = written()
                hidden = hidden_of(pruned_inputs.run(pruned.load_layer(new_index), new_index, hidden))
                per_layer[str(old_index)] = float((expected[..., kept.hidden] - hidden).abs().max())
                dropped = torch.ones(source.hidden_size, dtype=torch.bool)
                dropped[kept.hidden] = False
                if dropped.any():
                    outside = max(outside, float(expected[..., dropped.to(expected.device)].abs().max()))
        finally:
            for hook in hooks:
                hook.remove()
            shutil.rmtree(scratch, ignore_errors=True)
        return {"checked": True, "max_abs_hidden_diff": max(per_layer.values(), default=0.0),
                "per_layer_max_abs_hidden_diff": per_layer, "max_abs_removed_hidden": outside,
                "probe_tokens": ids.numel()}

    def extras(self) -> dict:
        return {"streaming": {"source_bytes": self.checkpoint.nbytes(), "source_bytes_read": self.checkpoint.bytes_read,
                              "written": self.written,
                              "activations": self.activations, "peak_rss_bytes": peak_rss_bytes()}}
