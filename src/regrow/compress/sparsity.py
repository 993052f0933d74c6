"""Sparsity inside the weights (ALGORITHMS.md section 10): the target (`--sparsity S` per output
row or `--pattern N:M`), the linear layers a sparse method prunes, and the layer-by-layer
calibration Wanda and SparseGPT share."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
from torch import nn

from regrow.compress.config import PruneConfig, parse_pattern
from regrow.device import autocast
from regrow.errors import RegrowError


@dataclass(frozen=True)
class SparsityTarget:
    """`--sparsity S` (per output row) or `--pattern N:M` (N kept in every M consecutive inputs)."""

    sparsity: float | None = None
    n: int | None = None
    m: int | None = None

    @classmethod
    def of(cls, cfg: PruneConfig) -> SparsityTarget:
        if cfg.pattern is not None:
            n, m = parse_pattern(cfg.pattern)
            return cls(n=n, m=m)
        return cls(sparsity=cfg.sparsity)

    @property
    def fraction_removed(self) -> float:
        return self.sparsity if self.m is None else 1 - self.n / self.m

    def describe(self) -> str:
        return f"{self.n}:{self.m}" if self.m is not None else f"{self.sparsity:.0%} unstructured"

    def check(self, name: str, weight: torch.Tensor) -> None:
        if self.m is not None and weight.shape[1] % self.m:
            raise RegrowError(f"--pattern {self.n}:{self.m}: M={self.m} does not divide the input width "
                              f"{weight.shape[1]} of {name}; choose an M that divides every input width")

    def keep(self, scores: torch.Tensor) -> torch.Tensor:
        """Boolean mask, True = kept: the highest scores of each row (or of each group of M)."""
        rows, cols = scores.shape
        if self.m is not None:
            groups = scores.reshape(rows, cols // self.m, self.m)
            kept = torch.zeros_like(groups, dtype=torch.bool)
            kept.scatter_(2, groups.topk(self.n, dim=2).indices, True)
            return kept.reshape(rows, cols)
        removed = int(cols * self.sparsity)
        kept = torch.ones_like(scores, dtype=torch.bool)
        if removed:
            kept.scatter_(1, scores.topk(removed, dim=1, largest=False).indices, False)
        return kept


def sparse_linears(model: nn.Module, adapter) -> dict[int, dict[str, nn.Linear]]:
    """The linear layers a sparse method prunes, by decoder layer: every nn.Linear inside a
    layer but the router (full parameter-name prefixes as keys)."""
    router = adapter.roles.router
    out = {}
    for index, layer in enumerate(adapter.layers(model)):
        prefix = f"{adapter.layers_path}.{index}."
        out[index] = {prefix + name: module for name, module in layer.named_modules()
                      if isinstance(module, nn.Linear) and name != router}
    return out


class LayerByLayer:
    """The calibration batches run through the decoder one layer at a time, in memory (as
    SparseGPT and Wanda do): the arguments the model passes to each layer are recorded once,
    the hidden states of every batch kept, so a layer can be run again after it was pruned
    and the next layer sees the pruned layer's outputs."""

    def __init__(self, model: nn.Module, adapter, batches: list[torch.Tensor], amp):
        self.layers = adapter.layers(model)
        self.amp = amp
        self.calls: dict[int, tuple[tuple, dict]] = {}
        hidden: list[torch.Tensor] = []

        def record(index):
            def hook(module, args, kwargs):
                if index not in self.calls:
                    self.calls[index] = (args[1:], {k: v for k, v in kwargs.items() if k != "hidden_states"})
                if index == 0 and self._stop:
                    hidden.append((args[0] if args else kwargs["hidden_states"]).detach())
                    raise _Stop
            return hook

        handles = [layer.register_forward_pre_hook(record(i), with_kwargs=True) for i, layer in enumerate(self.layers)]
        try:
            with torch.no_grad(), amp():
                self._stop = False
                model.base_model(input_ids=batches[0], use_cache=False)  # every layer's arguments
                self._stop = True
                for ids in batches:
                    try:
                        model.base_model(input_ids=ids, use_cache=False)
                    except _Stop:
                        pass
        finally:
            for handle in handles:
                handle.remove()
        self.hidden = hidden

    @torch.no_grad()
    def run(self, index: int) -> list[torch.Tensor]:
        """Layer `index` on every batch's hidden states (its hooks see its inputs)."""
        args, kwargs = self.calls[index]
        outputs = []
        with self.amp():
            for hidden in self.hidden:
                out = self.layers[index](hidden, *args, **kwargs)
                outputs.append(out[0] if isinstance(out, tuple) else out)
        return outputs

    def advance(self, index: int) -> None:
        """Replace the hidden states by layer `index`'s outputs (after it was pruned)."""
        self.hidden = self.run(index)


class _Stop(Exception):
    pass


@dataclass
class SparseResult:
    masks: dict[str, torch.Tensor]  # parameter name (".weight") -> kept
    details: dict = field(default_factory=dict)


@dataclass
class SparseContext:
    model: nn.Module
    adapter: object
    target: SparsityTarget
    cfg: PruneConfig
    device: torch.device
    batches: list[torch.Tensor]

    def autocast(self):
        return autocast(self.device, self.cfg.precision)


def feed_inputs(runner: LayerByLayer, index: int, linears: dict[str, nn.Linear], add) -> None:
    """Run layer `index` on every batch and hand each linear's inputs (one row per token) to
    `add(name, x)`: the statistics a sparse method calibrates on."""
    handles = [module.register_forward_hook(functools.partial(_forward_inputs, add, name))
               for name, module in linears.items()]
    try:
        runner.run(index)
    finally:
        for handle in handles:
            handle.remove()


def _forward_inputs(add, name: str, module: nn.Linear, inputs, output) -> None:
    add(name, inputs[0].reshape(-1, module.in_features))
