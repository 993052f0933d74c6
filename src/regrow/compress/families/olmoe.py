"""OLMoE: Mixtral's layout (experts in every layer, expert width in the config's
`intermediate_size`, which a target may also call `moe_intermediate_size`) with OLMo-2-style RMS
q/k norms over the whole query / key projection (pruning heads changes what they average over);
`norm_topk_prob` says whether the chosen gates are renormalised. The HF class sizes q_norm by
`hidden_size` and k_norm by hidden_size / heads x kv heads, so a target keeps hidden_size =
heads x head_dim (naming only the heads sets the hidden size; anything else is refused)."""

import dataclasses

from regrow.compress.families.base import FAMILIES, FamilyAdapter
from regrow.compress.families.mixtral import MixtralAdapter


@FAMILIES.register("olmoe")
class OlmoeAdapter(MixtralAdapter):
    model_types = ("olmoe",)
    experts_key = "num_experts"
    head_dim_from_hidden = True  # HF sizes q_norm by hidden_size and k_norm by hidden / heads x kv heads
    roles = dataclasses.replace(MixtralAdapter.roles, q_norm="self_attn.q_norm", k_norm="self_attn.k_norm")
    renormalises_top_k = FamilyAdapter.renormalises_top_k  # the config says (Mixtral always renormalises)
