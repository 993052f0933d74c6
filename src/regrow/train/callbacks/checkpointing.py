"""`checkpointing`: a resumable checkpoint every `train.checkpoint_every` steps and at the end
(sharded weights and optimizer, RNG, sampler and loop state; train/checkpoint.py)."""

from __future__ import annotations

from regrow.train.callbacks.base import CALLBACKS, Callback, StepInfo


@CALLBACKS.register("checkpointing")
class Checkpointing(Callback):
    summary = "a resumable checkpoint every train.checkpoint_every steps and at the end"

    def on_step(self, trainer, info: StepInfo) -> None:
        every = trainer.cfg.train.checkpoint_every
        if (every and info.step % every == 0) or info.step == trainer.cfg.train.steps:
            trainer.save_checkpoint()
