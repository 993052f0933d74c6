"""The pruning-method interface: a method turns a model (and maybe calibration data) into unit
scores; shared code turns scores into the exact target shape. Adding a method = one file with
a `@register("name")` class, imported in methods/__init__.py."""

from __future__ import annotations

import contextlib
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
from regrow.compress.shape import ArchShape
from regrow.data.sampler import MixtureSampler
from regrow.errors import RegrowError
from regrow.models.lazy import LazyCheckpoint
from regrow.registry import registrar
from regrow.world import World

METHODS: dict[str, type[PruningMethod]] = {}
register = registrar(METHODS)


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
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

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
    needs_data: ClassVar[bool] = True
    summary: ClassVar[str] = ""
    streams: ClassVar[bool] = False  # scores without gradients: can run on a checkpoint read layer by layer

    def check_target(self, source: ArchShape, target: ArchShape) -> None:
        """Refuse targets the method cannot reach (e.g. depth pruning only removes layers)."""

    def run(self, ctx: PruneContext) -> MethodResult:
        raise NotImplementedError


def require_layers_only(name: str, source: ArchShape, target: ArchShape) -> None:
    changed = [k for k in ("hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size")
               if getattr(source, k) != getattr(target, k)]
    if changed:
        raise RegrowError(f"method {name!r} removes whole layers only, but the target changes {', '.join(changed)}; "
                          "use activation, sheared, magnitude or random for width")
