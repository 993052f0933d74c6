"""`train_log`: the `train` event every `train.log_every` steps and at the end: loss, LR, gradient
norm, throughput of the steps since the last one (train-step time only: evaluations and saves
excluded), distillation parts."""

from __future__ import annotations

from regrow.train.callbacks.base import CALLBACKS, Callback, StepInfo


@CALLBACKS.register("train_log")
class TrainLog(Callback):
    summary = "the train event (loss, lr, grad norm, tokens/s) every train.log_every steps"

    def __init__(self):
        self.seconds, self.tokens = 0.0, 0

    def on_step(self, trainer, info: StepInfo) -> None:
        self.seconds += info.seconds
        self.tokens += trainer.tokens_per_step
        if info.step % trainer.cfg.train.log_every and info.step != trainer.cfg.train.steps:
            return
        tps = self.tokens / max(self.seconds, 1e-9)
        self.seconds, self.tokens = 0.0, 0
        lr = trainer.schedule(info.step)
        trainer.log("train", info.step, {"tokens": info.tokens, "loss": info.loss, "lr": lr, "grad_norm": info.grad_norm,
                                         "tokens_per_s": tps, **trainer.last_parts})
        trainer.bar.set_postfix_str(f"loss {info.loss:.3f} lr {lr:.2e} {tps:,.0f} tok/s")
