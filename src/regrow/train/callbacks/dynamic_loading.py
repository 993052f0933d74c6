"""`dynamic_loading` (data.dynamic): re-weight the mixture every `interval` steps from the current
validation losses against the reference losses (Sheared-LLaMA's rule; docs/ALGORITHMS.md §5); the
`mixture` event logs the weights. With `reference: source` the reference is the run's own
start, measured once and kept in the checkpoint."""

from __future__ import annotations

from regrow.train.callbacks.base import CALLBACKS, Callback, StepInfo
from regrow.train.dynamic import reference_losses, update_weights


def mixture_values(weights: dict[str, float]) -> dict:
    return {f"mixture/{name}": w for name, w in weights.items()}


@CALLBACKS.register("dynamic_loading")
class DynamicLoading(Callback):
    summary = "re-weights the data mixture from validation losses (data.dynamic)"

    def on_start(self, trainer) -> None:
        if trainer.resume_from is not None:
            return
        dyn = trainer.cfg.data.dynamic
        if dyn.reference == "source":
            domains = list(trainer.mixture)
            start = trainer.evaluate(domains, dyn.eval_tokens)
            trainer.dynamic_reference = reference_losses("source", domains, {d: start[d]["loss"] for d in domains}, 0)
        trainer.log("mixture", 0, {"tokens": 0, **mixture_values(trainer.sampler.weights)})

    def on_step(self, trainer, info: StepInfo) -> None:
        dyn = trainer.cfg.data.dynamic
        if info.step % dyn.interval:  # also at the end: a resumed, longer run matches
            return
        domains = list(trainer.mixture)
        losses = trainer.evaluate(domains, dyn.eval_tokens)
        weights = update_weights(trainer.sampler.weights, {d: losses[d]["loss"] for d in domains},
                                 trainer.dynamic_reference, dyn.eta, dyn.clamp, dyn.smoothing)
        trainer.sampler.set_weights(weights)
        trainer.log("mixture", info.step, {"tokens": info.tokens, **mixture_values(weights)})
