"""Qwen3-MoE: Qwen3's attention (an RMSNorm over each query and key head, kept whole) and Qwen2-MoE's
layer pattern (`mlp_only_layers`, `decoder_sparse_step`: dense MLPs of `intermediate_size` in
some layers), with experts of `moe_intermediate_size` and no shared expert."""

import dataclasses

from regrow.compress.families.base import FAMILIES
from regrow.compress.families.qwen2_moe import Qwen2MoeAdapter


@FAMILIES.register("qwen3_moe")
class Qwen3MoeAdapter(Qwen2MoeAdapter):
    model_types = ("qwen3_moe",)
    shared_width_key = None
    roles = dataclasses.replace(Qwen2MoeAdapter.roles, shared_in=(), shared_out=None, shared_gate=None,
                                head_norms=("self_attn.q_norm", "self_attn.k_norm"))
