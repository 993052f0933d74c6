"""The callback interface: hooks at the start of the loop, after every optimizer step and at
the end, each given the trainer (its model, optimizer, sampler, `log`, `evaluate`, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from regrow.registry import Registry

if TYPE_CHECKING:
    from regrow.train.trainer import Trainer

CALLBACKS: Registry[type[Callback]] = Registry("callback", entry_points="regrow.callbacks")


@dataclass(frozen=True)
class StepInfo:
    """What one optimizer step did: its 1-based number, tokens so far, loss, gradient norm, seconds."""

    step: int
    tokens: int
    loss: float
    grad_norm: float
    seconds: float


class Callback:
    """A recipe's `train.callbacks: [{name: NAME, key: value}]` builds `CALLBACKS[NAME](key=value)`.
    A callback must not draw random numbers or change the batch stream if a resumed run is to
    stay bit-identical (the built-in ones keep what they need in the checkpoint)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def on_start(self, trainer: Trainer) -> None:
        """Before the first step of this process (also after a resume)."""

    def on_step(self, trainer: Trainer, info: StepInfo) -> None:
        """After optimizer step `info.step`."""

    def on_end(self, trainer: Trainer) -> None:
        """After the last step, before the final model is saved."""
