"""Sparsity inside the weights (docs/ALGORITHMS.md §10): the target (`--sparsity S` per output
row or `--pattern N:M`), the linear layers a sparse method prunes, and the one calibration pass
Wanda and SparseGPT share."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from regrow.compress.config import PruneConfig, parse_pattern
from regrow.compress.experts import ExpertMatrix, expert_matrices, find, route_through
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

    @classmethod
    def leaving(cls, ratio: float, n_source: int, n_weights: int) -> SparsityTarget:
        """--target-ratio R for a sparse method: the per-row sparsity that leaves R of all
        parameters non-zero (only the decoder's `n_weights` linear weights can be zeroed)."""
        sparsity = n_source * (1 - ratio) / n_weights
        if not 0 < sparsity < 1:
            floor = 1 - n_weights / n_source
            raise RegrowError(f"--target-ratio {ratio}: a sparse method zeroes only the decoder's linear weights "
                              f"({n_weights / n_source:.1%} of the parameters), so the ratio must be above {floor:.3f} "
                              "and below 1")
        return cls(sparsity=sparsity)

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
        if not removed:
            return torch.ones_like(scores, dtype=torch.bool)
        kth = scores.kthvalue(removed, dim=1, keepdim=True).values  # faster than topk at k ~ cols / 2
        dropped = scores <= kth
        if not bool((dropped.sum(1) == removed).all()):  # ties at the k-th score: drop the first ones only
            below, tied = scores < kth, scores == kth
            dropped = below | (tied & (tied.cumsum(1) <= removed - below.sum(1, keepdim=True)))
        return ~dropped


def sparse_units(model: nn.Module, adapter) -> dict[int, dict[str, nn.Module]]:
    """The matrices a sparse method prunes, by decoder layer, in call order: every nn.Linear inside a
    layer but the router and the shared expert's gate (full module names as keys), and each
    expert's matrix of a fused experts tensor as its own `ExpertMatrix` (`...experts.down_proj[3]`)."""
    shape = adapter.shape(model.config)
    out = {}
    for index, layer in enumerate(adapter.layers(model)):
        roles = adapter.roles_of(adapter.layer_kind(shape, index))
        skipped = {roles.router, roles.shared_gate} - {None}
        prefix = f"{adapter.layers_path}.{index}."
        experts = find(layer, roles.experts)
        units = {}
        for name, module in layer.named_modules():
            if module is experts:
                units |= expert_matrices(experts, prefix + name)
            elif isinstance(module, nn.Linear) and name not in skipped:
                units[prefix + name] = module
        out[index] = units
    return out


def sparse_weight_count(model: nn.Module, adapter) -> int:
    return sum(unit.weight.numel() for layer in sparse_units(model, adapter).values() for unit in layer.values())


def masks_by_parameter(units: dict[str, nn.Module], kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The units' masks by parameter name: a linear's `.weight`, a fused experts tensor's masks
    stacked expert by expert in the tensor's own layout (what `sparsity_mask.safetensors` holds)."""
    out, fused, transposed = {}, {}, set()
    for name, unit in units.items():
        if isinstance(unit, ExpertMatrix):
            fused.setdefault(unit.parameter, {})[unit.expert] = kept[name]
            if getattr(unit.experts, "is_transposed", False):
                transposed.add(unit.parameter)
        else:
            out[f"{name}.weight"] = kept[name]
    for parameter, experts in fused.items():
        stacked = torch.stack([experts[e] for e in range(len(experts))])
        out[parameter] = stacked.transpose(1, 2) if parameter in transposed else stacked
    return out


def magnitude_where_unreached(units: dict[str, nn.Module], kept: dict[str, torch.Tensor],
                              target: SparsityTarget) -> list[str]:
    """Units no calibration token reached (an expert the router never chose): pruned by magnitude,
    the only score left without inputs. Returns their names."""
    unreached = [name for name in units if name not in kept]
    with torch.no_grad():
        for name in unreached:
            weight = units[name].weight
            kept[name] = target.keep(weight.abs().float())
            weight.mul_(kept[name].to(weight.dtype))
    return unreached


def prune_in_call_order(model: nn.Module, batches: list[torch.Tensor], amp, linears: dict[str, nn.Module],
                        measure: Callable[[list[torch.Tensor]], object],
                        prune: Callable[[str, nn.Linear, object], None]) -> int:
    """One forward pass of every calibration batch, all batches together: each batch runs in
    its own thread (one at a time) and waits at each linear of `linears` until every batch has
    reached it; then `prune(name, module, measure(inputs))` sees all batches' inputs (one row
    per token) and changes the weight before any batch goes on. So every linear is calibrated
    on the outputs of all linears pruned before it (SparseGPT's "true sequential" order), and
    the model runs once instead of twice per layer. `measure` runs once for linears fed the very
    same tensors (q/k/v, gate/up). Returns the number of calls that reached a linear after it
    was pruned (a module called twice, or out of module order): they run pruned, uncounted.
    `linears` may hold `ExpertMatrix` units: their experts modules are computed through them
    meanwhile; a unit no batch reaches (an expert never routed to) is left to the caller."""
    order = {name: index for index, name in enumerate(linears)}
    names = {module: name for name, module in linears.items()}
    pruned: set[str] = set()
    late = 0

    def hook(module, args):
        nonlocal late
        name = names[module]
        if name in pruned:
            late += 1
        else:
            threading.current_thread().park(name, args[0])

    def forward(ids):
        with torch.no_grad(), amp():
            model.base_model(input_ids=ids, use_cache=False)

    workers = [_Batch(forward, ids) for ids in batches]
    handles = [module.register_forward_pre_hook(hook) for module in linears.values()]
    handles += route_through([unit for unit in linears.values() if isinstance(unit, ExpertMatrix)])
    previous, measured = [], None
    try:
        for worker in workers:
            worker.start()
            worker.step()
        while live := [worker for worker in workers if not worker.done]:
            name = min((worker.at for worker in live), key=order.__getitem__)
            group = [worker for worker in live if worker.at == name]
            inputs = [worker.input for worker in group]
            if len(previous) != len(inputs) or any(ref() is not x for ref, x in zip(previous, inputs)):
                module = linears[name]
                with torch.no_grad():
                    measured = measure([x.reshape(-1, module.in_features) for x in inputs])
                previous = [weakref.ref(x) for x in inputs]  # not kept alive: only to see the same tensors again
            del inputs
            with torch.no_grad():
                prune(name, linears[name], measured)
            pruned.add(name)
            for worker in group:
                worker.input = None
                worker.step()
    finally:
        for worker in workers:
            worker.stop()
        for handle in handles:
            handle.remove()
    return late


class _Batch(threading.Thread):
    """One calibration batch's forward pass, run a piece at a time: `step()` (the scheduler)
    lets it run until it parks at the next linear (`park`, in its own thread) or ends."""

    def __init__(self, forward, ids):
        super().__init__(daemon=True)
        self.forward, self.ids = forward, ids
        self.at = self.input = self.error = None
        self.done = self.aborted = False
        self._go, self._parked = threading.Event(), threading.Event()

    def run(self) -> None:
        self._go.wait()
        self._go.clear()
        try:
            if not self.aborted:
                self.forward(self.ids)
        except _Abort:
            pass
        except BaseException as err:  # handed to the scheduler's thread
            self.error = err
        finally:
            self.done, self.at, self.input = True, None, None
            self._parked.set()

    def park(self, name: str, x: torch.Tensor) -> None:
        self.at, self.input = name, x
        self._parked.set()
        self._go.wait()
        self._go.clear()
        if self.aborted:
            raise _Abort

    def step(self) -> None:
        self._parked.clear()
        self._go.set()
        self._parked.wait()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """End the thread (after an error elsewhere: its pass is abandoned)."""
        if self.is_alive():
            self.aborted = True
            self._parked.clear()
            self._go.set()
            self.join()


class _Abort(Exception):
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
