"""One pruning run, top to bottom, whether the model is in memory or streamed from disk:
load -> resolve and check the target -> score the units with the chosen method -> select
exactly the target shape -> slice (and fold) -> check against the masked model -> write a plain
HF folder with pruning_report.json.

The two ways differ only in how the model's tensors are fetched and written (`InMemoryModel`,
`StreamingModel`); every stage and every report field is shared, so a new family or method
works both ways at once.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

from regrow.atomic import atomic_dir, write_json_atomic
from regrow.compress.calibration import calibration_sampler
from regrow.compress.config import PruneConfig
from regrow.compress.families import adapter_for
from regrow.compress.inmemory import InMemoryModel
from regrow.compress.methods import METHODS
from regrow.compress.reinit import REINITS
from regrow.compress.report import CONFIG, REPORT, pruning_report
from regrow.compress.rewind import rewind_weights
from regrow.compress.select import select
from regrow.compress.slicing import KeptUnits
from regrow.compress.sparse import prune_sparse
from regrow.compress.streaming import StreamingModel
from regrow.compress.targets import checked_target, count_parameters, describe_split
from regrow.config import to_dict, write_yaml_atomic
from regrow.data.tokenizer import load_tokenizer_if_any
from regrow.device import resolve_device
from regrow.errors import RegrowError
from regrow.models.flops import model_shape
from regrow.paths import check_output_dir
from regrow.world import World, rank_batch


def _silent(message: str) -> None:
    pass


def check_config(cfg: PruneConfig) -> None:
    """Validate a pruning config against the registered methods and reinits."""
    cfg.validate(list(METHODS), list(REINITS), METHODS.where(lambda m: m.sparse),
                 REINITS.where(lambda f: getattr(f, "needs_snapshot", False)))


def check_finite_exactness(exactness: dict, source: str) -> None:
    """NaN or infinity in the masked-vs-sliced comparison means non-finite weights or activations
    somewhere: an error (nothing is written), never a model reported as checked."""
    values = [v for k, v in exactness.items() if k.startswith("max_abs")]
    values += list(exactness.get("per_layer_max_abs_hidden_diff", {}).values())
    if not all(math.isfinite(v) for v in values):
        raise RegrowError(f"the exactness check of the pruned model is not finite (max |diff| masked vs sliced "
                          f"{max(values, key=lambda v: not math.isfinite(v))}): the source {source!r} holds NaN or "
                          "infinite weights, or they overflow its dtype; nothing was written")


def check_given_options(given: set[str], cfg: PruneConfig, method, source=None, target=None) -> None:
    """Options the user set that would change nothing in this combination are refused, named
    (the shape-dependent rules once the source and target shapes are known)."""
    if "activation_memory_gb" in given and not cfg.streaming:
        raise RegrowError("--activation-memory-gb bounds the calibration activations of --streaming only; without "
                          "--streaming it changes nothing: drop it or add --streaming")
    if "expert_criterion" not in given:
        return
    if not method.uses_expert_criterion:
        users = METHODS.where(lambda m: m.uses_expert_criterion)
        raise RegrowError(f"--expert-criterion: method {cfg.method!r} does not use it (only {', '.join(users)} "
                          "does); drop it or choose that method")
    if source is None:
        return
    if not source.num_experts:
        raise RegrowError(f"--expert-criterion: {cfg.model!r} is a dense model (no experts to score); drop it")
    if target.num_experts == source.num_experts:
        raise RegrowError(f"--expert-criterion: the target keeps all {source.num_experts} experts, so no expert is "
                          "chosen; drop it or set num_experts in the target")


def prune(cfg: PruneConfig, echo: Callable[[str], None] = print, given: set[str] = frozenset()) -> dict:
    """Run one pruning job; returns the report (also written to OUT/pruning_report.json). `given`:
    the config keys the user set (the command line), checked for options without effect."""
    check_config(cfg)
    out = check_output_dir(cfg.out, "--out")
    method = METHODS[cfg.method]()
    method.check_config(cfg)
    check_given_options(given, cfg, method)
    access = StreamingModel if cfg.streaming else InMemoryModel
    world = World.from_env()
    access.check(cfg, method, world)
    if method.needs_data and not cfg.data:
        raise RegrowError(f"method {cfg.method!r} needs calibration data: pass --data DATA_DIR (made by `regrow data prepare`)")
    if method.needs_data:  # every process takes an equal slice of each batch: checked before any process waits on another
        rank_batch(cfg.batch_size, cfg.batch_size, world.world_size, "--batch-size")
    if not world.is_main:
        echo = _silent
    started = time.perf_counter()
    if method.sparse:
        if world.distributed:
            raise RegrowError(f"sparse method {cfg.method!r} runs as one process (not under torchrun)")
        return prune_sparse(cfg, method, resolve_device(cfg.device), out, started, echo)
    device = world.device(resolve_device(cfg.device))
    world.start(device)  # a sharded (sheared) model is loaded by every process together
    try:
        return _prune(cfg, method, access, world, device, out, started, echo, given)
    finally:
        world.stop()


def _prune(cfg: PruneConfig, method, access, world: World, device, out, started: float, echo,
           given: set[str] = frozenset()) -> dict:
    # load, resolve the target
    model = access(cfg, world, device)
    adapter = adapter_for(model.config)
    adapter.check_model(model.module)
    source = adapter.shape(model.config)
    target = checked_target(model.module, adapter, cfg.target, cfg.target_ratio, depth_only=not method.changes_width)
    method.check_target(source, target)
    check_given_options(given, cfg, method, source, target)
    n_source, n_target = count_parameters(model.module, adapter, source), count_parameters(model.module, adapter, target)
    shape = model_shape(model.module)
    echo(f"source: {source.describe()}; {n_source:,} parameters{model.describe()}")
    echo(f"target: {target.describe()}; {n_target:,} parameters ({n_target / n_source:.1%})")
    split = describe_split(source, target) if cfg.target_ratio is not None else None
    if split:
        echo(f"ratio {cfg.target_ratio} split: {split}")
    tokenizer = load_tokenizer_if_any(cfg.model, cfg.trust_remote_code)
    sampler, mixture = calibration_sampler(cfg, tokenizer, model.module, world) if method.needs_data else (None, {})

    with atomic_dir(out) if world.is_main else contextlib.nullcontext() as tmp:  # rank 0 writes
        # score (every process of a training method takes part)
        ctx = model.context(adapter, source, target, device, sampler, world, tmp)
        scoring_started = time.perf_counter()
        result = method.run(ctx)
        scoring_seconds = time.perf_counter() - scoring_started
        model.scored(ctx)
        if not world.is_main:
            return {}
        del ctx

        if cfg.rewind_from:  # lottery-ticket rewinding: the mask of the trained weights, the early weights
            rewind_weights(model.module, cfg.rewind_from, cfg.trust_remote_code)
        # select, slice, check, write
        masks = select(result.scores, source, target, result.values, adapter.first_layer_kinds)
        n_target = count_parameters(model.module, adapter, target, KeptUnits(masks, source).layers)  # exact for mixed layers
        exactness = model.write(adapter, masks, target, result.values is not None, device, tmp)
        check_finite_exactness(exactness, cfg.model)
        if model.written_parameters != n_target:
            raise AssertionError(f"wrote {model.written_parameters} parameters, the target has {n_target}")
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        report = {
            **pruning_report(cfg, source, target, n_source, n_target, mixture, result,
                             method.flops(shape, cfg.seq_len, result.details), masks),
            "exactness": exactness,
            **({"ratio_split": split} if split else {}),
            **model.extras(),
            "wall_seconds": {"scoring": scoring_seconds, "total": time.perf_counter() - started},
        }
        write_yaml_atomic(tmp / CONFIG, to_dict(cfg))
        write_json_atomic(tmp / REPORT, report)
    diff = exactness.get("max_abs_logit_diff", exactness.get("max_abs_hidden_diff"))
    echo(f"kept layers {report['kept']['layers']}; max |diff| masked vs sliced {diff:.2e} ({model.kind} check)")
    echo(f"wrote {out} ({n_target:,} parameters) in {report['wall_seconds']['total']:.1f} s")
    return report

