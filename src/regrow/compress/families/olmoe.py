"""OLMoE: OLMo-2-style RMS q/k norms over the whole query / key projection (pruning heads changes
what they average over), pre-sublayer norms, and a mixture of experts in every layer. The
config names the expert width `intermediate_size` (a target may use either that or
`moe_intermediate_size`); `norm_topk_prob` says whether the chosen gates are renormalised."""

from regrow.compress.families.base import FAMILIES, LayerRoles
from regrow.compress.families.llama import LlamaAdapter
from regrow.compress.families.mixtral import MOE_ROLES


@FAMILIES.register("olmoe")
class OlmoeAdapter(LlamaAdapter):
    model_types = ("olmoe",)
    experts_key = "num_experts"
    expert_width_key = "intermediate_size"
    roles = LayerRoles(
        q=("self_attn.q_proj",),
        kv=("self_attn.k_proj", "self_attn.v_proj"),
        attn_out="self_attn.o_proj",
        norms=("input_layernorm", "post_attention_layernorm"),
        q_norm="self_attn.q_norm",
        k_norm="self_attn.k_norm",
        **MOE_ROLES,
    )
