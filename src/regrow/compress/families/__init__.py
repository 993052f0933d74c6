"""Family adapters, one module each, registered in FAMILIES; `adapter_for(config)` picks the one
whose `model_types` holds `config.model_type`.

Adding a family = one file with a `@FAMILIES.register("name")` FamilyAdapter subclass (built-in
ones are imported here).
"""

from __future__ import annotations

from regrow.compress.families import (  # noqa: F401  (registration)
    bloom,
    deepseek_v2,
    deepseek_v3,
    falcon_h1,
    gemma2,
    gemma3,
    glm4_moe,
    gpt_neox,
    gpt_oss,
    granitemoehybrid,
    lfm2,
    lfm2_moe,
    llama,
    mixtral,
    nemotron_h,
    olmo,
    olmo2,
    olmo_hybrid,
    olmoe,
    phi3,
    qwen2_moe,
    qwen3,
    qwen3_5,
    qwen3_moe,
    qwen3_next,
    smollm3,
)
from regrow.compress.families.base import FAMILIES, Axis, FamilyAdapter, LayerRoles
from regrow.errors import RegrowError


def supported_model_types() -> list[str]:
    return sorted(t for family in FAMILIES.values() for t in family.model_types)


def adapter_for(config) -> FamilyAdapter:
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family()
    raise RegrowError(f"model_type {model_type!r} is not supported for pruning; supported: {', '.join(supported_model_types())}")


__all__ = ["FAMILIES", "Axis", "FamilyAdapter", "LayerRoles", "adapter_for", "supported_model_types"]
