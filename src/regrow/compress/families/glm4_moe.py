"""GLM-4.5 / GLM-4.6 (`glm4_moe`): Llama-like grouped-query attention (q/k/v biases when
`attention_bias`, partial rotary, optional per-head q/k RMSNorms kept whole) with DeepSeek-V3's
mixture of experts: dense first layers, routed experts behind a group-limited sigmoid router
with a score-correction bias, shared experts (families/deepseek_moe.py, families/routing.py).
Multi-token-prediction weights are not part of the HF model and are not carried.
"""

from regrow.compress.families.base import FAMILIES
from regrow.compress.families.deepseek_moe import DeepSeekMoeLayout, moe_roles
from regrow.compress.families.llama import LlamaAdapter
from regrow.compress.families.routing import GroupLimitedRouting


@FAMILIES.register("glm4_moe")
class Glm4MoeAdapter(GroupLimitedRouting, DeepSeekMoeLayout, LlamaAdapter):
    model_types = ("glm4_moe",)
    roles = moe_roles(q=("self_attn.q_proj",), kv=("self_attn.k_proj", "self_attn.v_proj"), attn_out="self_attn.o_proj",
                      head_norms=("self_attn.q_norm", "self_attn.k_norm"))
