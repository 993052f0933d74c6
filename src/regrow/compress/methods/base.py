"""The pruning-method interface: a method turns a model (and maybe calibration data) into unit
scores; shared code turns scores into the exact target shape.

Adding a method = one file with a `@METHODS.register("name")` class (built-in ones are imported
in methods/__init__.py). The class declares what it needs and may do (`needs_data`, `trains`,
`changes_width`, `streams`, `flops`); the pipeline reads those, never the method's name."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from regrow.compress.config import PruneConfig
from regrow.compress.families.base import FamilyAdapter
from regrow.compress.layerwise import LayerwiseModel
from regrow.compress.masks import Masks
from regrow.compress.shape import EXPERT_KEYS, SHAPE_KEYS, ArchShape
from regrow.compress.sparsity import SparseResult
from regrow.data.sampler import MixtureSampler
from regrow.device import autocast
from regrow.errors import RegrowError
from regrow.models.flops import ModelShape, forward_flops_per_token
from regrow.models.lazy import LazyCheckpoint
from regrow.registry import Registry
from regrow.world import World

METHODS: Registry[type[PruningMethod]] = Registry("method")
register = METHODS.register


@dataclass
class PruneContext:
    """What a method may use: the model (on its device), its family, shapes, data, options.

    Streaming (`--streaming`): `model` is None; `checkpoint` reads tensors lazily, `layerwise`
    runs the decoder one layer at a time and `parameters` names the model's parameters.
    """

    model: nn.Module | None
    adapter: FamilyAdapter
    source: ArchShape
    target: ArchShape
    cfg: PruneConfig
    device: torch.device
    sampler: MixtureSampler | None
    checkpoint: LazyCheckpoint | None = None
    layerwise: LayerwiseModel | None = None
    parameters: list[str] = field(default_factory=list)
    world: World = field(default_factory=World)  # processes sharing a sheared run (torchrun)

    @property
    def streaming(self) -> bool:
        return self.model is None

    def autocast(self):
        return autocast(self.device, self.cfg.precision)

    @property
    def calibration_batches(self) -> int:
        return math.ceil(self.cfg.calibration_samples / self.cfg.batch_size)

    def calibration(self) -> Iterator[torch.Tensor]:
        """Input batches of the calibration set (deterministic: the sampler's first batches)."""
        assert self.sampler is not None
        for step in range(self.calibration_batches):
            inputs, _ = self.sampler.batch(step)
            yield inputs.to(self.device)


@dataclass
class MethodResult:
    scores: Masks  # higher = more important; None for a kind the method does not score
    values: Masks | None = None  # mask values to fold into the kept weights (sheared)
    details: dict = field(default_factory=dict)  # method-specific facts for pruning_report.json


class PruningMethod:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    needs_data: ClassVar[bool] = True  # reads calibration data (--data)
    trains: ClassVar[bool] = False  # trains with gradients: several processes help (torchrun)
    changes_width: ClassVar[bool] = True  # False: removes whole layers only (a ratio target keeps the width)
    streams: ClassVar[bool] = False  # scores without gradients: can run on a checkpoint read layer by layer
    scores_experts: ClassVar[bool] = False  # scores experts and their channels (mixtures of experts)
    sparse: ClassVar[bool] = False  # zeroes weights inside the matrices (--sparsity / --pattern), keeps the shape
    uses_expert_criterion: ClassVar[bool] = False  # scores experts by `expert_criterion` (reap, frequency, random)

    def check_target(self, source: ArchShape, target: ArchShape) -> None:
        """Refuse targets the method cannot reach (by default: a width change if it only removes
        layers, an expert change if it cannot score experts)."""
        if not self.changes_width:
            require_layers_only(self.name, source, target)
        changed = [k for k in EXPERT_KEYS if getattr(source, k) != getattr(target, k)]
        if changed and not self.scores_experts:
            able = METHODS.where(lambda method: method.scores_experts)
            raise RegrowError(f"method {self.name!r} cannot score experts, but the target changes {', '.join(changed)}; "
                              f"methods that can: {', '.join(able)}")

    def check_config(self, cfg) -> None:
        """Refuse options this method cannot honour (`cfg`: PruneConfig); called before any work."""

    def flops(self, shape: ModelShape, seq_len: int, details: dict) -> float:
        """FLOPs spent on the source model (docs/ALGORITHMS.md §8): by default a forward pass over the
        calibration tokens the method reports (0 for weight-only methods)."""
        return forward_flops_per_token(shape, seq_len) * details.get("calibration_tokens", 0)

    def run(self, ctx: PruneContext) -> MethodResult:
        raise NotImplementedError


def require_layers_only(name: str, source: ArchShape, target: ArchShape) -> None:
    changed = [k for k in SHAPE_KEYS if k != "num_hidden_layers" and getattr(source, k) != getattr(target, k)]
    if changed:
        width = METHODS.where(lambda method: method.changes_width)
        raise RegrowError(f"method {name!r} removes whole layers only, but the target changes {', '.join(changed)}; "
                          f"use {', '.join(width)} for width")


class SparseMethod(PruningMethod):
    """A method that keeps the architecture and zeroes weights (compress/sparse.py runs it)."""

    sparse = True
    changes_width = False
    def check_target(self, source: ArchShape, target: ArchShape) -> None:
        if target != source:
            raise RegrowError(f"method {self.name!r} is sparse: it keeps the architecture, so it takes a fraction of "
                              "non-zero parameters (a target ratio), --sparsity or --pattern, not a target shape")

    def sparsify(self, ctx) -> SparseResult:
        """The kept-weight masks (`ctx`: compress.sparse.SparseContext); may update kept weights."""
        raise NotImplementedError

    def run(self, ctx: PruneContext) -> MethodResult:
        raise RegrowError(f"method {self.name!r} is a sparse method: give --sparsity S or --pattern N:M")
