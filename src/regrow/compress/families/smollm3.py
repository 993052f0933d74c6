"""SmolLM3: Llama-like layers, some of which use no rotary embedding at all (NoPE): the config's
per-layer `no_rope_layers` (1 = RoPE, 0 = none) follows the kept layers, as `layer_types` does,
so every kept layer keeps its own position handling."""

from regrow.compress.families.base import FAMILIES
from regrow.compress.families.llama import LlamaAdapter


@FAMILIES.register("smollm3")
class SmolLM3Adapter(LlamaAdapter):
    model_types = ("smollm3",)
    per_layer_fields = ("layer_types", "no_rope_layers")
