"""Mixtral: Llama-like attention; every MLP is a mixture of experts (transformers 5 layout: a
router `mlp.gate` [experts, hidden] and fused experts `mlp.experts`). The config names the expert
count `num_local_experts` and the expert width `intermediate_size` (a target may use either that
or `moe_intermediate_size`). The router takes the top-k of a softmax over all experts and always
renormalises the chosen k, so a sliced router with fewer rows gives the same gates."""

from regrow.compress.families.base import FAMILIES, LayerRoles
from regrow.compress.families.llama import LlamaAdapter


@FAMILIES.register("mixtral")
class MixtralAdapter(LlamaAdapter):
    model_types = ("mixtral",)
    experts_key = "num_local_experts"
    expert_width_key = "intermediate_size"
    roles = LayerRoles(
        q=("self_attn.q_proj",),
        kv=("self_attn.k_proj", "self_attn.v_proj"),
        attn_out="self_attn.o_proj",
        norms=("input_layernorm", "post_attention_layernorm"),
        writers=("self_attn.o_proj", "mlp"),
        router="mlp.gate",
        experts="mlp.experts",
        moe_block="mlp",
    )

    def renormalises_top_k(self, config) -> bool:
        return True
