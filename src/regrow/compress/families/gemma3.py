"""Gemma-3 text models (`Gemma3ForCausalLM`, model_type gemma3_text): Gemma-2's layout (sandwich
norms, 1 + weight RMSNorms, sqrt(hidden_size) embedding scale, compensated as there) plus an
RMSNorm over each query and key head (weight [head_dim], shared by all heads), kept whole like
Qwen3's. Sliding-window and global layers use different RoPE bases; the kept layers keep their
`layer_types`, so each keeps its own."""

import dataclasses

from regrow.compress.families.base import FAMILIES
from regrow.compress.families.gemma2 import Gemma2Adapter


@FAMILIES.register("gemma3")
class Gemma3Adapter(Gemma2Adapter):
    model_types = ("gemma3_text",)
    roles = dataclasses.replace(Gemma2Adapter.roles, head_norms=("self_attn.q_norm", "self_attn.k_norm"))
