"""`snapshots` (train.save_at_tokens): plain HF folders at the requested token counts, for
sensitivity and probes over pre-training. A snapshot is taken at the first step that reaches its
count (its snapshot.json says where exactly); snapshots are never pruned like checkpoints and a
resume does not redo them."""

from __future__ import annotations

from regrow.train.callbacks.base import CALLBACKS, Callback, StepInfo


@CALLBACKS.register("snapshots")
class Snapshots(Callback):
    summary = "plain HF folders at the token counts of train.save_at_tokens"

    def on_step(self, trainer, info: StepInfo) -> None:
        previous = info.tokens - trainer.tokens_per_step
        for target in trainer.cfg.train.save_at_tokens:
            if previous < target <= info.tokens:
                trainer.save_model(trainer.out / "snapshots" / f"tokens-{target}", {"snapshot.json": {
                    "step": info.step, "tokens": info.tokens, "requested_tokens": target, "run": str(trainer.out)}})
