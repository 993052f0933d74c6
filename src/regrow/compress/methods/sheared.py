"""`sheared` (Sheared-LLaMA, docs/ALGORITHMS.md §1): learn hard-concrete L0 masks on layers, heads,
MLP channels and hidden channels together with the weights, under a Lagrangian constraint that
pulls the expected sparsity of each kind of mask to the target's; then the deterministic mask
(exactly the target shape) with its soft values folded into the weights. A mixture of experts
adds masks on experts (one constraint per layer) and on each expert's channels (one per expert):
an expert whose sampled gate is 0 is taken out of routing for that step (its router logit is
-inf before the top-k, so the token goes to the next expert), an open one's gate value scales
its routing weight; the target's top-k routes from the first step.

The masks act on the unmodified HF model through forward hooks (compress/masks.py), so any
family with an adapter can be sheared, grouped-query attention included.
"""

from __future__ import annotations

import math
import statistics
import time

import torch
from torch import nn
from tqdm import tqdm

from regrow.compress.masks import MaskHooks, Masks
from regrow.compress.methods.base import MethodResult, PruneContext, PruningMethod, register
from regrow.compress.shape import ArchShape
from regrow.models.evaluate import causal_lm_loss
from regrow.models.flops import ModelShape, training_flops_per_token
from regrow.resources import peak_memory
from regrow.schedules import Schedule, build_schedule
from regrow.world import World

LIMIT_L, LIMIT_R, EPS = -0.1, 1.1, 1e-6
LOG_ALPHA_RANGE = (math.log(0.01), math.log(100.0))


class HardConcrete(nn.Module):
    """Hard-concrete gates (Louizos et al. 2018), one per unit; rows = independent constraints."""

    def __init__(self, rows: int, size: int, temperature: float, init_mean: float, generator: torch.Generator):
        super().__init__()
        self.temperature = temperature
        self.log_alpha = nn.Parameter(torch.randn(rows, size, generator=generator) * 0.01 + init_mean)

    def clamp_(self) -> None:
        with torch.no_grad():
            self.log_alpha.clamp_(*LOG_ALPHA_RANGE)

    def sample(self, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(self.log_alpha.shape, generator=generator).clamp(EPS, 1 - EPS).to(self.log_alpha.device)
        s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + self.log_alpha) / self.temperature)
        return (s * (LIMIT_R - LIMIT_L) + LIMIT_L).clamp(0.0, 1.0)

    def kept_probability(self) -> torch.Tensor:
        """P(z > 0) per unit."""
        return 1 - torch.sigmoid(self.temperature * math.log(-LIMIT_L / LIMIT_R) - self.log_alpha)

    def expected_sparsity(self) -> torch.Tensor:
        """Per row: 1 - expected fraction of kept units."""
        return 1 - self.kept_probability().mean(-1)

    def deterministic(self) -> torch.Tensor:
        """The soft score used to rank units and to fold into the kept weights."""
        return torch.sigmoid(self.log_alpha / self.temperature * 0.8).detach()


def mask_layout(source: ArchShape, target: ArchShape) -> dict[str, tuple[int, int, float]]:
    """Which kinds of mask are learned: kind -> (rows, units per row, target sparsity)."""
    L = source.num_hidden_layers
    layout = {}
    if target.num_hidden_layers < L:
        layout["layer"] = (1, L, 1 - target.num_hidden_layers / L)
    if (target.num_attention_heads, target.num_key_value_heads) != (source.num_attention_heads, source.num_key_value_heads):
        layout["head"] = (L, source.num_attention_heads, 1 - target.num_attention_heads / source.num_attention_heads)
    if target.intermediate_size < source.intermediate_size:
        layout["mlp"] = (L, source.intermediate_size, 1 - target.intermediate_size / source.intermediate_size)
    if target.hidden_size < source.hidden_size:
        layout["hidden"] = (1, source.hidden_size, 1 - target.hidden_size / source.hidden_size)
        if "conv" in source.layer_kinds:  # a short conv's channels, as many as hidden (a row per layer)
            layout["conv"] = (L, source.hidden_size, 1 - target.hidden_size / source.hidden_size)
    if target.num_experts < source.num_experts:
        layout["expert"] = (L, source.num_experts, 1 - target.num_experts / source.num_experts)
    if target.moe_intermediate_size < source.moe_intermediate_size:  # one constraint per expert
        width = source.moe_intermediate_size
        layout["expert_mlp"] = (L * source.num_experts, width, 1 - target.moe_intermediate_size / width)
    if target.shared_expert_intermediate_size < source.shared_expert_intermediate_size:
        width = source.shared_expert_intermediate_size
        layout["shared_mlp"] = (L, width, 1 - target.shared_expert_intermediate_size / width)
    if target.mamba_num_heads < source.mamba_num_heads:  # a row per layer; attention layers' rows go unused
        layout["mamba_head"] = (L, source.mamba_num_heads, 1 - target.mamba_num_heads / source.mamba_num_heads)
    for kind, key in (("q_latent", "q_lora_rank"), ("kv_latent", "kv_lora_rank")):
        if getattr(target, key) < getattr(source, key):
            layout[kind] = (L, getattr(source, key), 1 - getattr(target, key) / getattr(source, key))
    if target.mamba_head_dim < source.mamba_head_dim:  # a head's channels, the same in every head of a layer
        layout["mamba_channel"] = (L, source.mamba_head_dim, 1 - target.mamba_head_dim / source.mamba_head_dim)
    if target.linear_num_value_heads < source.linear_num_value_heads:  # key heads follow their value heads
        width = source.linear_num_value_heads
        layout["linear_head"] = (L, width, 1 - target.linear_num_value_heads / width)
    return layout


def _as_masks(values: dict[str, torch.Tensor], source: ArchShape, target: ArchShape) -> Masks:
    """Per-kind [rows, size] tensors -> Masks (layer and hidden are single rows, expert channels
    one row per layer and expert); the target's top-k routes while the masks train."""
    get = values.get
    return Masks(
        layer=None if get("layer") is None else values["layer"][0],
        head=get("head"),
        mlp=get("mlp"),
        hidden=None if get("hidden") is None else values["hidden"][0],
        expert=get("expert"),
        expert_mlp=None if get("expert_mlp") is None else values["expert_mlp"].view(source.num_hidden_layers, source.num_experts, -1),
        shared_mlp=get("shared_mlp"),
        mamba_head=get("mamba_head"),
        mamba_channel=get("mamba_channel"),
        q_latent=get("q_latent"),
        kv_latent=get("kv_latent"),
        conv=get("conv"),
        linear_head=get("linear_head"),
        experts_per_token=target.num_experts_per_tok if target.num_experts_per_tok < source.num_experts_per_tok else None,
        topk_group=target.topk_group if target.topk_group < source.topk_group else None,
    )


def lr_schedule(total: int, warmup_fraction: float, min_fraction: float) -> Schedule:
    """The factor every LR is multiplied by: linear warmup over `warmup_fraction` of the steps,
    then cosine down to `min_fraction` of the peak (the schedules registry's `cosine`)."""
    warmup = min(int(round(warmup_fraction * total)), total - 1)
    return build_schedule({"name": "cosine", "lr_max": 1.0, "lr_min": min_fraction, "warmup_steps": warmup}, total)


def average_gradients(optimizer: torch.optim.Optimizer, world: World) -> None:
    """Every process takes its slice of the batch; the mean of their gradients is the gradient of
    the whole batch (equal slices). The masks and Lagrange multipliers are replicated and averaged
    here; the model's sharded weights (FSDP2 DTensors) were averaged by FSDP's reduce-scatter."""
    if not world.distributed:
        return
    for group in optimizer.param_groups:
        for param in group["params"]:
            if param.grad is not None and not hasattr(param, "to_local"):
                world.sum_(param.grad).div_(world.world_size)


@register("sheared")
class ShearedPruning(PruningMethod):
    summary = "learned hard-concrete masks with a Lagrangian constraint, trained on the data mixture (Sheared-LLaMA); experts too"
    trains = True
    scores_experts = True

    def flops(self, shape: ModelShape, seq_len: int, details: dict) -> float:
        """Training steps (forward and backward) over the mask-training tokens."""
        return training_flops_per_token(shape, seq_len) * details["tokens"]

    def run(self, ctx: PruneContext) -> MethodResult:
        opts, model, device = ctx.cfg.sheared, ctx.model, ctx.device
        layout = mask_layout(ctx.source, ctx.target)
        init_gen = torch.Generator().manual_seed(ctx.cfg.seed)
        noise_gen = torch.Generator().manual_seed(ctx.cfg.seed + 1)
        gates = nn.ModuleDict({kind: HardConcrete(rows, size, opts.temperature, opts.init_log_alpha, init_gen)
                               for kind, (rows, size, _) in layout.items()}).to(device)
        lambdas = nn.ParameterDict({kind: nn.Parameter(torch.zeros(2, device=device)) for kind in layout})
        weights = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            [
                {"params": weights, "lr": opts.lr_weights, "base_lr": opts.lr_weights},
                {"params": list(gates.parameters()), "lr": opts.lr_masks, "base_lr": opts.lr_masks},
                {"params": list(lambdas.parameters()), "lr": opts.lr_lambdas, "base_lr": opts.lr_lambdas, "maximize": True},
            ],
            betas=(0.9, 0.95), weight_decay=0.0,
        )
        hooks = MaskHooks(model, ctx.adapter)
        model.train()
        history, step_seconds = [], []
        started = time.perf_counter()
        bar = tqdm(range(opts.steps), desc="sheared", unit="step", disable=not (ctx.cfg.progress and ctx.world.is_main),
                   dynamic_ncols=True)
        factor_of = lr_schedule(opts.steps, opts.warmup_fraction, opts.min_lr_fraction)
        try:
            for step in bar:
                step_started = time.perf_counter()
                factor = factor_of(step + 1)
                for group in optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
                ramp = min(1.0, (step + 1) / max(opts.target_ramp_fraction * opts.steps, 1e-9))
                for gate in gates.values():
                    gate.clamp_()
                hooks.masks = _as_masks({kind: gate.sample(noise_gen) for kind, gate in gates.items()}, ctx.source, ctx.target)
                inputs, targets = ctx.sampler.batch(step)
                inputs, targets = inputs.to(device), targets.to(device)
                with ctx.autocast():
                    lm_loss = causal_lm_loss(model, inputs, targets)
                constraint = torch.zeros((), device=device)
                sparsity = {}
                for kind, gate in gates.items():
                    expected = gate.expected_sparsity()
                    gap = expected - layout[kind][2] * ramp
                    lam = lambdas[kind]
                    constraint = constraint + (lam[0] * gap + lam[1] * gap * gap).mean()
                    sparsity[kind] = float(expected.detach().mean())
                (lm_loss.float() + constraint).backward()
                average_gradients(optimizer, ctx.world)
                if opts.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(weights, opts.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step_seconds.append(time.perf_counter() - step_started)
                if (step + 1) % opts.log_every == 0 or step + 1 == opts.steps:
                    record = {"step": step + 1, "lm_loss": ctx.world.mean(lm_loss), "constraint": float(constraint.detach()),
                              "expected_sparsity": sparsity,
                              "target_sparsity": {k: layout[k][2] * ramp for k in layout},
                              "lambdas": {k: lambdas[k].detach().tolist() for k in layout}}
                    history.append(record)
                    bar.set_postfix_str(f"loss {record['lm_loss']:.3f} " + " ".join(f"{k} {v:.2f}" for k, v in sparsity.items()))
        finally:
            hooks.remove()
        soft = _as_masks({kind: gate.deterministic().cpu() for kind, gate in gates.items()}, ctx.source, ctx.target)
        details = {
            "steps": opts.steps, "tokens": opts.steps * ctx.cfg.batch_size * ctx.cfg.seq_len,
            "seconds_per_step": (time.perf_counter() - started) / opts.steps,
            "step_seconds_median": statistics.median(step_seconds),
            "learned": {k: {"rows": r, "units": n, "target_sparsity": t} for k, (r, n, t) in layout.items()},
            "temperature": opts.temperature, "fold": opts.fold, "history": history,
            "processes": ctx.world.world_size,  # > 1: the source sharded with FSDP2
        }
        details["peak_memory_bytes"], details["peak_memory_kind"] = peak_memory(device)  # rank 0, mask training
        return MethodResult(scores=soft, values=soft if opts.fold else None, details=details)
