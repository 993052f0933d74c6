"""Qwen3: Llama-like projections and pre-sublayer RMSNorms, plus an RMSNorm over each query and
key head (weight [head_dim], shared by every head) before RoPE. Pruning heads removes whole heads,
so those norms are kept as they are; head_dim is explicit in the config and never pruned.
Sliding-window `layer_types` follow the kept layers."""

import dataclasses

from regrow.compress.families.base import FAMILIES
from regrow.compress.families.llama import LlamaAdapter


@FAMILIES.register("qwen3")
class Qwen3Adapter(LlamaAdapter):
    model_types = ("qwen3",)
    roles = dataclasses.replace(LlamaAdapter.roles, head_norms=("self_attn.q_norm", "self_attn.k_norm"))
