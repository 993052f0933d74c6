"""What a pruning run writes beside the pruned model: the report's parts, shared by the
in-memory and the streaming path."""

from __future__ import annotations

from regrow.compress.config import PruneConfig
from regrow.compress.masks import Masks
from regrow.compress.slicing import KeptUnits

REPORT = "pruning_report.json"
CONFIG = "prune_config.yaml"


def scores_for_report(scores: Masks) -> dict:
    return {kind: [round(float(v), 6) for v in t.flatten()] if t.dim() == 1 else [[round(float(v), 6) for v in row] for row in t]
            for kind in ("layer", "head", "mlp", "hidden", "expert", "mamba_head", "mamba_channel", "linear_head",
                         "conv", "q_latent", "kv_latent")
            if (t := getattr(scores, kind)) is not None}


def kept_report(masks: Masks, source) -> dict:
    kept = KeptUnits(masks, source)
    per_layer = {}
    for layer in kept.layers:
        per_layer[str(layer)] = {
            "heads": kept.units("head", layer)[0].tolist(),
            "kv_heads": kept.units("kv", layer)[0].tolist(),
            "mlp": kept.units("mlp", layer)[0].tolist(),
        }
        kind = source.layer_kinds[layer] if source.layer_kinds else None  # a hybrid's mixers: in their own layers
        for key, unit, present in (("experts", "expert", source.num_experts),
                                   ("expert_channels", "expert_mlp", source.num_experts),  # [kept expert][channel]
                                   ("mamba_heads", "mamba_head", source.mamba_num_heads and kind in (None, "mamba")),
                                   ("mamba_groups", "mamba_group", source.mamba_num_heads and kind in (None, "mamba")),
                                   ("mamba_channels", "mamba_channel", source.mamba_num_heads and kind in (None, "mamba")),
                                   ("linear_value_heads", "linear_head", kind == "deltanet"),
                                   ("q_latent", "q_latent", source.q_lora_rank), ("kv_latent", "kv_latent", source.kv_lora_rank),
                                   ("linear_key_heads", "linear_key", kind == "deltanet")):
            if present:
                per_layer[str(layer)][key] = kept.units(unit, layer)[0].tolist()
    return {"layers": kept.layers, "per_layer": per_layer, "hidden": kept.hidden.tolist()}


def pruning_report(cfg: PruneConfig, source, target, n_source: int, n_target: int, mixture: dict, result, flops: float,
                   masks: Masks) -> dict:
    """The report's keys both paths write (each adds its exactness, timing and extras)."""
    return {
        "model": str(cfg.model),
        "method": cfg.method,
        "reinit": cfg.reinit,
        "source": {"shape": source.as_dict(), "parameters": n_source},
        "target": {"shape": target.as_dict(), "parameters": n_target, "fraction_kept": n_target / n_source},
        "mixture": mixture,
        "calibration_tokens": result.details.get("calibration_tokens", result.details.get("tokens", 0)),
        "flops": flops,
        "kept": kept_report(masks, source),
        "scores": scores_for_report(result.scores),
        "method_details": result.details,
    }
