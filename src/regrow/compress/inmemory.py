"""The pipeline's model access for a model that fits in memory: scored in place (gradients
allowed), sliced and folded in memory, checked end to end (masked vs sliced logits), then
re-initialised if asked and written with `save_pretrained`."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from regrow.compress.config import PruneConfig
from regrow.compress.masks import MaskHooks, Masks
from regrow.compress.methods import METHODS, PruneContext, PruningMethod
from regrow.compress.reinit import REINITS
from regrow.compress.slicing import slice_model
from regrow.errors import RegrowError
from regrow.models.hf import load_model
from regrow.models.sharded import gathered_state_dict, load_sharded
from regrow.world import World


def probe_ids(vocab_size: int, seed: int, device) -> torch.Tensor:
    """A fixed small batch of token ids for the exactness check (both access modes)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (2, 32), generator=g).to(device)


@torch.no_grad()
def logits_of(model, ids: torch.Tensor, adapter=None, masks: Masks | None = None) -> torch.Tensor:
    """Logits in eval mode; with `masks`, of the masked model (deterministic mask)."""
    hooks = None
    if masks is not None:
        hooks = MaskHooks(model, adapter)
        hooks.masks, hooks.final = masks, True
    mode = model.training
    model.eval()
    try:
        return model(input_ids=ids, use_cache=False).logits.float()
    finally:
        model.train(mode)
        if hooks is not None:
            hooks.remove()


class InMemoryModel:
    """The whole model on the device."""

    kind = "in-memory"

    @staticmethod
    def check(cfg: PruneConfig, method: PruningMethod, world: World) -> None:
        if world.distributed and not method.trains:
            trains = " / ".join(METHODS.where(lambda m: m.trains))
            raise RegrowError(f"more than one process (WORLD_SIZE={world.world_size}) only helps --method {trains}, which "
                              f"trains; {cfg.method!r} is one pass: run it as one process (add --streaming for "
                              "checkpoints beyond memory)")

    def __init__(self, cfg: PruneConfig, world: World, device: torch.device):
        self.cfg = cfg
        if world.distributed:  # a method that trains (sheared): sharded with FSDP2, each process reads its rows
            self.model = load_sharded(cfg.model, world, device, cfg.precision, trust_remote_code=cfg.trust_remote_code)
        else:
            self.model = load_model(cfg.model, cfg.trust_remote_code).to(device)
        self.module, self.config = self.model, self.model.config
        self.sharded = world.distributed

    def describe(self) -> str:
        return f"; sharded over {dist.get_world_size()} processes (FSDP2)" if self.sharded else ""

    def context(self, adapter, source, target, device, sampler, world: World, tmp: Path | None) -> PruneContext:
        return PruneContext(self.model, adapter, source, target, self.cfg, device, sampler, world=world)

    def scored(self, ctx: PruneContext) -> None:
        """A sharded model's trained weights are gathered into a plain model on rank 0 (every
        process takes part), where slicing and the check run as for one process."""
        if not self.sharded:
            return
        from transformers import AutoModelForCausalLM
        from transformers.initialization import no_init_weights

        full = gathered_state_dict(self.model)
        self.model = self.module = None
        if not ctx.world.is_main:
            return
        with no_init_weights():
            model = AutoModelForCausalLM.from_config(self.config, trust_remote_code=self.cfg.trust_remote_code)
        model.load_state_dict(full)
        model.tie_weights()
        self.model = self.module = model.to(ctx.device)

    def write(self, adapter, masks: Masks, target, fold: bool, device, tmp: Path) -> dict:
        """Slice (folding mask values when asked), compare the logits of the masked and the sliced
        model on a fixed probe, re-initialise, save; returns the exactness record."""
        ids = probe_ids(self.config.vocab_size, self.cfg.seed, device)
        masked = logits_of(self.model, ids, adapter, masks)
        pruned = slice_model(self.model, adapter, masks, target, fold=fold, consume=True)
        self.model = self.module = None
        max_diff = float((masked - logits_of(pruned, ids)).abs().max())
        pruned = REINITS[self.cfg.reinit](pruned, adapter, self.cfg.seed, self.cfg.shrink_perturb.shrink,
                                          self.cfg.shrink_perturb.perturb)
        self.written_parameters = sum(p.numel() for p in pruned.parameters())
        pruned.to("cpu").save_pretrained(tmp, safe_serialization=True)
        return {"checked": True, "max_abs_logit_diff": max_diff, "probe_tokens": ids.numel(),
                "checked_before_reinit": True}

    def extras(self) -> dict:
        return {}
