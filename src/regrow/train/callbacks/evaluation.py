"""`evaluation`: validation loss per domain at the phase start, every `train.eval_every` steps
and at the end (the `eval` event; the last one is kept for the run summary)."""

from __future__ import annotations

from regrow.train.callbacks.base import CALLBACKS, Callback, StepInfo


def eval_values(results: dict) -> dict:
    return {f"eval/{name}/loss": r["loss"] for name, r in results.items()}


@CALLBACKS.register("evaluation")
class Evaluation(Callback):
    summary = "validation loss per domain at the start, every train.eval_every steps and at the end"

    def on_start(self, trainer) -> None:
        if trainer.phase_start_eval is None:
            trainer.phase_start_eval = trainer.evaluate()
            trainer.log("eval", 0, {"tokens": 0, **eval_values(trainer.phase_start_eval)})

    def on_step(self, trainer, info: StepInfo) -> None:
        every = trainer.cfg.train.eval_every
        if (every and info.step % every == 0) or info.step == trainer.cfg.train.steps:
            trainer.last_eval = {"step": info.step, "results": trainer.evaluate()}
            trainer.log("eval", info.step, {"tokens": info.tokens, **eval_values(trainer.last_eval["results"])})

    def on_end(self, trainer) -> None:
        if trainer.last_eval is None or trainer.last_eval["step"] != trainer.step:  # resumed past train.steps
            trainer.last_eval = {"step": trainer.step, "results": trainer.evaluate()}
