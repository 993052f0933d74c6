"""Qwen3.5 (`qwen3_5_text`, dense, and `qwen3_5_moe_text`): Qwen3-Next's hybrid of gated DeltaNet and
gated full attention (`layer_types`), with the DeltaNet's projections unfused (`in_proj_qkv`
rows [all q | all k | all v], `in_proj_z`, `in_proj_b`, `in_proj_a`: the base adapter's layout),
followed by a SwiGLU MLP (dense) or, in every layer, experts with a shared expert (MoE).

The multimodal checkpoints (`qwen3_5`, `qwen3_5_moe`: a vision tower beside the language model)
load through transformers as their text model, which is what regrow prunes and exports; the
vision weights are left out (docs/PRUNING.md).
"""

import dataclasses

from regrow.compress.families.base import FAMILIES
from regrow.compress.families.llama import LlamaAdapter
from regrow.compress.families.qwen2_moe import Qwen2MoeAdapter
from regrow.compress.families.qwen3_next import GatedDeltaNetHybrid, deltanet_roles


@FAMILIES.register("qwen3_5_text")
class Qwen35Adapter(GatedDeltaNetHybrid, LlamaAdapter):
    model_types = ("qwen3_5_text",)
    roles = deltanet_roles(LlamaAdapter.roles, "mlp.down_proj")


@FAMILIES.register("qwen3_5_moe_text")
class Qwen35MoeAdapter(GatedDeltaNetHybrid, Qwen2MoeAdapter):
    model_types = ("qwen3_5_moe_text",)
    roles = deltanet_roles(dataclasses.replace(Qwen2MoeAdapter.roles, mlp_in=(), mlp_out=""), "mlp")

    def moe_layers(self, config) -> list[bool]:
        return [True] * config.num_hidden_layers

    def renormalises_top_k(self, config) -> bool:
        return True  # its router always divides the chosen experts' probabilities by their sum

    def layer_overrides(self, config, index: int) -> dict:
        return LlamaAdapter.layer_overrides(self, config, index)

    def target_config(self, config, target, kept_layers: list[int]):
        return LlamaAdapter.target_config(self, config, target, kept_layers)  # no mlp_only_layers to write
