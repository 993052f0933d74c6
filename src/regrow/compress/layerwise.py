"""Run an HF decoder one layer at a time from a checkpoint on disk (calibration beyond memory).

The model is never built whole. A one-layer skeleton of the same config (tiny vocabulary, so
no embedding-sized tensors) holds the code: the checkpoint's embedding is swapped in and the
base model's forward is run until the decoder loop calls its first layer, which captures the
hidden states and the exact arguments the model passes to a layer (attention mask, position
embeddings or ALiBi). A model whose layers differ by per-layer config lists (`layer_types`:
sliding-window and full layers in Gemma-2/3, OLMo-3, Qwen3; SmolLM3's `no_rope_layers`; dense and
mixture-of-experts layers in Qwen2/3-MoE) gets one skeleton per kind of layer, each catching its own arguments (its mask, its rotary embeddings).
Then each layer's weights are loaded into the skeleton layer of its kind and every calibration
batch goes through it: the approach of layer-wise quantizers (GPTQ), with no per-family forward
code.
"""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from regrow.compress.families.base import FamilyAdapter
from regrow.compress.slicing import empty_model, named_tensors
from regrow.errors import RegrowError
from regrow.models.lazy import LazyCheckpoint


class _Caught(Exception):
    pass


class _Catcher(nn.Module):
    """Stands in for layer 0: records its inputs and stops the forward. Other attributes are the
    replaced layer's (Nemotron-H picks each layer's attention mask by its `block_type`)."""

    def __init__(self, replaced: nn.Module):
        super().__init__()
        self.caught: tuple[torch.Tensor, tuple, dict] | None = None
        self._replaced = (replaced,)  # in a tuple: not a child module

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_replaced"][0], name)

    def forward(self, hidden_states, *args, **kwargs):
        self.caught = (hidden_states, args, kwargs)
        raise _Caught


class ActivationStore:
    """Hidden states of every calibration batch: in memory, or one file per batch on disk."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.items: dict[int, torch.Tensor | None] = {}
        if folder is not None:
            folder.mkdir(parents=True)

    def put(self, index: int, hidden: torch.Tensor) -> None:
        hidden = hidden.detach().cpu()
        if self.folder is None:
            self.items[index] = hidden
        else:
            save_file({"h": hidden.contiguous()}, self.folder / f"{index}.safetensors")
            self.items[index] = None

    def get(self, index: int) -> torch.Tensor:
        if self.folder is None:
            return self.items[index]
        return load_file(self.folder / f"{index}.safetensors")["h"]

    def drop(self) -> None:
        self.items.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


class LayerInputs:
    """What the model passes to each decoder layer besides the hidden states, per layer kind."""

    def __init__(self, kinds: list, by_kind: dict):
        self.kinds, self.by_kind = kinds, by_kind

    def run(self, layer: nn.Module, index: int, hidden: torch.Tensor):
        args, kwargs = self.by_kind[self.kinds[index]]
        return layer(hidden, *args, **kwargs)


class LayerwiseModel:
    """A decoder whose layers are loaded from `checkpoint` one at a time, in `dtype` (float32 as
    the in-memory path; bfloat16 uses a bf16 checkpoint's weights straight from the file)."""

    def __init__(self, checkpoint: LazyCheckpoint, config, adapter: FamilyAdapter, device: torch.device,
                 activation_budget_bytes: int, scratch: Path, dtype: torch.dtype = torch.float32):
        self.checkpoint, self.adapter, self.device = checkpoint, adapter, device
        self.num_layers = config.num_hidden_layers
        self.embedding_scale = adapter.embedding_scale(config)
        # a layer's kind: the config fields that make a one-layer model build it (its entries of the
        # per-layer lists: attention type, RoPE or not; dense MLP or mixture of experts)
        overrides = [adapter.layer_overrides(config, i) for i in range(self.num_layers)]
        self.kinds = [repr(sorted(o.items())) for o in overrides]
        self.dtype = dtype
        special = [getattr(config, k, None) for k in ("pad_token_id", "bos_token_id", "eos_token_id")]
        self.skeletons: dict = {}  # layer kind -> one-layer model of that kind
        for kind, override in dict(zip(self.kinds, overrides)).items():
            small = copy.deepcopy(config)
            small.num_hidden_layers = 1
            for field, value in override.items():
                setattr(small, field, value)
            small.vocab_size = 1 + max([i for i in special if isinstance(i, int)], default=0)
            small.tie_word_embeddings = False
            self.skeletons[kind] = empty_model(small, torch.float32).to(device).eval()
        self.layers = {kind: adapter.layers(skeleton)[0] for kind, skeleton in self.skeletons.items()}
        self.layer_kinds = {kind: adapter.layer_kind(adapter.shape(skeleton.config), 0)  # a hybrid's kind of layer
                            for kind, skeleton in self.skeletons.items()}
        for kind in self.layers:
            self._release_layer(kind)  # weights are assigned per layer: hold no memory until then
        self._load_outer_modules()
        self.budget = activation_budget_bytes
        self.scratch = scratch
        self.on_disk = False
        self._stores = 0

    def layer_prefix(self, index: int) -> str:
        return f"{self.adapter.layers_path}.{index}."

    def _load_outer_modules(self) -> None:
        """Small modules outside the layers that the forward needs (e.g. Bloom's embedding norm)."""
        skip = {f"{self.adapter.embedding}.weight", f"{self.adapter.lm_head}.weight"}
        for skeleton in self.skeletons.values():
            own = skeleton.state_dict()
            wanted = [n for n in self.checkpoint.names
                      if n in own and n not in skip and not n.startswith(self.adapter.layers_path + ".")]
            skeleton.load_state_dict(self.checkpoint.read(wanted), strict=False)

    def new_store(self, batches: int, batch_shape: tuple[int, ...], alive: int) -> ActivationStore:
        """A store for one set of hidden states; on disk once `alive` sets would exceed the budget."""
        size = batches * math.prod(batch_shape) * self.dtype.itemsize
        self.on_disk = self.on_disk or size * alive > self.budget
        self._stores += 1
        return ActivationStore(self.scratch / f"h{self._stores}" if self.on_disk else None)

    @torch.inference_mode()
    def embed(self, batches: list[torch.Tensor], alive: int, autocast) -> tuple[ActivationStore, LayerInputs]:
        """Layer-0 inputs of every batch, and the per-layer arguments of each layer kind (from the
        first batch).

        The embedding rows are read from the checkpoint for as many batches at once as the
        activation budget holds (each distinct row once per group: I/O at most one table read
        per group, not per batch) and passed as `inputs_embeds` in float32, as the in-memory
        path's embedding gives them."""
        embedding = f"{self.adapter.embedding}.weight"
        scale = torch.tensor(self.embedding_scale)  # as the model's own embedding multiplies (float32)
        store, by_kind = None, {}
        for index, embeds in self._embedded(embedding, batches):
            embeds = embeds.float().to(self.device)
            if self.embedding_scale != 1.0:
                embeds = embeds * scale.to(self.device, embeds.dtype)
            # every kind's arguments from the first batch; the hidden states are the same in every skeleton
            for kind in self.skeletons if index == 0 else [self.kinds[0]]:
                hidden, args, kwargs = self._first_layer_inputs(self.skeletons[kind], kind, embeds, autocast)
                by_kind.setdefault(kind, (args, kwargs))
            if store is None:
                store = self.new_store(len(batches), tuple(hidden.shape), alive)
            store.put(index, hidden.to(self.dtype))
        return store, LayerInputs(self.kinds, by_kind)

    def _embedded(self, embedding: str, batches: list[torch.Tensor]):
        """(index, embedding rows) of each batch, the rows read for a group of batches at once."""
        row_bytes = 4 * math.prod(self.checkpoint.shapes[embedding][1:])
        group = max(1, self.budget // max(1, max((ids.numel() for ids in batches), default=1) * row_bytes))
        for start in range(0, len(batches), group):
            chunk = batches[start : start + group]
            rows = self.checkpoint.rows(embedding, torch.cat([ids.flatten().cpu() for ids in chunk]))
            for offset, (ids, embeds) in enumerate(zip(chunk, rows.split([ids.numel() for ids in chunk]))):
                yield start + offset, embeds.view(*ids.shape, -1)

    def _first_layer_inputs(self, skeleton: nn.Module, kind, embeds: torch.Tensor, autocast) -> tuple:
        layers = self.adapter.layers(skeleton)
        catcher = _Catcher(layers[0])
        layers[0] = catcher
        try:
            try:
                with autocast():
                    skeleton.base_model(inputs_embeds=embeds, use_cache=False)
            except _Caught:
                pass
        finally:
            layers[0] = self.layers[kind]
        if catcher.caught is None:
            raise RegrowError(f"{type(skeleton).__name__} never called its first decoder layer; it cannot be streamed")
        return catcher.caught

    @torch.no_grad()
    def load_layer(self, index: int, rows: dict[str, torch.Tensor] | None = None) -> nn.Module:
        """The skeleton layer of layer `index`'s kind, holding its weights. They are assigned, not
        copied: a checkpoint already in the compute dtype is used straight from its memory map.
        `rows` (full name -> kept rows of dim 0) reads only those rows of a tensor, the rest zero."""
        prefix = self.layer_prefix(index)
        kind = self.kinds[index]
        layer = self.layers[kind]
        rels = [name for name, _ in named_tensors(layer)]
        missing = [prefix + rel for rel in rels if prefix + rel not in self.checkpoint.shapes]
        if missing:
            raise RegrowError(f"layer {index} of {str(self.checkpoint.folder)!r} lacks weights: {', '.join(missing[:3])}")
        self._release_layer(kind)
        rows = rows or {}
        for rel in rels:  # one tensor at a time
            name = prefix + rel
            if name in rows:
                tensor = self.checkpoint.kept_rows(name, rows[name], self.dtype)
            else:
                tensor = self.checkpoint.read([name])[name]
            layer.load_state_dict({rel: tensor.to(self.device, self.dtype)}, strict=False, assign=True)
            del tensor
        return layer

    def release(self) -> None:
        """Drop the weights of every skeleton layer (the last loaded layer's stay until then)."""
        for kind in self.layers:
            self._release_layer(kind)

    @torch.no_grad()
    def _release_layer(self, kind) -> None:
        """Drop a skeleton layer's weights (meta tensors keep the shapes load_state_dict checks)."""
        for module in self.layers[kind].modules():
            for name, param in list(module.named_parameters(recurse=False)):
                module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=False)
