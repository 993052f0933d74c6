"""One pruning run, top to bottom: load the model, resolve and check the target, score the units
with the chosen method, select exactly the target shape, check that the sliced model matches
the masked one, re-initialise if asked, and write a plain HF folder with pruning_report.json.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from regrow.atomic import atomic_dir, write_json_atomic
from regrow.compress.calibration import calibration_sampler
from regrow.compress.config import PruneConfig
from regrow.compress.families import adapter_for
from regrow.compress.masks import MaskHooks, Masks
from regrow.compress.methods import METHODS, PruneContext
from regrow.compress.reinit import REINITS
from regrow.compress.report import CONFIG, REPORT, pruning_flops, pruning_report
from regrow.compress.select import select
from regrow.compress.slicing import slice_model
from regrow.compress.streaming import check_streaming, prune_streaming
from regrow.compress.targets import checked_target, count_parameters
from regrow.config import to_dict, write_yaml_atomic
from regrow.data.tokenizer import load_tokenizer_if_any
from regrow.errors import RegrowError
from regrow.models.hf import load_model
from regrow.paths import check_output_dir
from regrow.train.trainer import resolve_device
from regrow.world import World


def _silent(message: str) -> None:
    pass


def probe_ids(vocab_size: int, seed: int, device) -> torch.Tensor:
    """A fixed small batch of token ids for the exactness check."""
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


def prune(cfg: PruneConfig, echo: Callable[[str], None] = print) -> dict:
    """Run one pruning job; returns the report (also written to OUT/pruning_report.json)."""
    cfg.validate(list(METHODS), list(REINITS))
    out = check_output_dir(cfg.out, "--out")
    method = METHODS[cfg.method]()
    if cfg.streaming:
        check_streaming(cfg)
    if method.needs_data and not cfg.data:
        raise RegrowError(f"method {cfg.method!r} needs calibration data: pass --data DATA_DIR (made by `regrow data prepare`)")
    if cfg.streaming:
        return prune_streaming(cfg, echo)
    world = World.from_env()
    if world.distributed and cfg.method != "sheared":
        raise RegrowError(f"more than one process (WORLD_SIZE={world.world_size}) only helps --method sheared, which trains; "
                          f"{cfg.method!r} is one pass: run it as one process (add --streaming for checkpoints beyond memory)")
    if not world.is_main:
        echo = _silent
    started = time.perf_counter()

    model = load_model(cfg.model, cfg.trust_remote_code)
    adapter = adapter_for(model.config)
    adapter.check_model(model)
    source = adapter.shape(model.config)
    target = checked_target(model, adapter, cfg.target, cfg.target_ratio, depth_only=cfg.method == "depth")
    method.check_target(source, target)
    n_source, n_target = count_parameters(model, adapter, source), count_parameters(model, adapter, target)
    echo(f"source: {source.describe()}; {n_source:,} parameters")
    echo(f"target: {target.describe()}; {n_target:,} parameters ({n_target / n_source:.1%})")

    tokenizer = load_tokenizer_if_any(cfg.model, cfg.trust_remote_code)
    sampler, mixture = calibration_sampler(cfg, tokenizer, model, world) if method.needs_data else (None, {})

    device = world.device(resolve_device(cfg.device))
    model.to(device)
    world.start(device)
    ctx = PruneContext(model, adapter, source, target, cfg, device, sampler, world=world)
    scoring_started = time.perf_counter()
    try:
        result = method.run(ctx)
    finally:
        world.stop()
    if not world.is_main:  # the replicas hold the same trained masks and weights: rank 0 writes
        return {}
    scoring_seconds = time.perf_counter() - scoring_started

    flops = pruning_flops(model, cfg, result.details)
    masks = select(result.scores, source, target, result.values)
    ids = probe_ids(model.config.vocab_size, cfg.seed, device)
    masked = logits_of(model, ids, adapter, masks)
    pruned = slice_model(model, adapter, masks, target, fold=result.values is not None, consume=True)
    del model, ctx
    max_diff = float((masked - logits_of(pruned, ids)).abs().max())
    pruned = REINITS[cfg.reinit](pruned, adapter, cfg.seed, cfg.shrink_perturb.shrink, cfg.shrink_perturb.perturb)
    n_written = sum(p.numel() for p in pruned.parameters())
    assert n_written == n_target, (n_written, n_target)

    report = {
        **pruning_report(cfg, source, target, n_source, n_target, mixture, result, flops, masks),
        "exactness": {"max_abs_logit_diff": max_diff, "checked_before_reinit": True},
        "wall_seconds": {"scoring": scoring_seconds, "total": time.perf_counter() - started},
    }
    pruned.to("cpu")
    with atomic_dir(out) as tmp:
        pruned.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        write_yaml_atomic(tmp / CONFIG, to_dict(cfg))
        write_json_atomic(tmp / REPORT, report)
    echo(f"kept layers {report['kept']['layers']}; max |logit diff| masked vs sliced {max_diff:.2e}")
    echo(f"wrote {out} ({n_target:,} parameters) in {report['wall_seconds']['total']:.1f} s")
    return report
