"""Family adapters, one module each; `adapter_for(model)` picks one by `config.model_type`.

Adding a family = one file with a FamilyAdapter subclass, plus its line in FAMILIES.
"""

from __future__ import annotations

from regrow.compress.families.base import Axis, FamilyAdapter, LayerRoles
from regrow.compress.families.bloom import BloomAdapter
from regrow.compress.families.gpt_neox import GPTNeoXAdapter
from regrow.compress.families.llama import LlamaAdapter
from regrow.compress.families.olmo import OlmoAdapter
from regrow.compress.families.olmo2 import Olmo2Adapter
from regrow.errors import RegrowError

FAMILIES: tuple[FamilyAdapter, ...] = (LlamaAdapter(), GPTNeoXAdapter(), BloomAdapter(), OlmoAdapter(), Olmo2Adapter())


def supported_model_types() -> list[str]:
    return sorted(t for family in FAMILIES for t in family.model_types)


def adapter_for(config) -> FamilyAdapter:
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise RegrowError(f"model_type {model_type!r} is not supported for pruning; supported: {', '.join(supported_model_types())}")


__all__ = ["FAMILIES", "Axis", "FamilyAdapter", "LayerRoles", "adapter_for", "supported_model_types"]
