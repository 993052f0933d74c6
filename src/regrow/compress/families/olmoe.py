"""OLMoE: Mixtral's layout (experts in every layer, expert width in the config's
`intermediate_size`, which a target may also call `moe_intermediate_size`) with OLMo-2-style RMS
q/k norms over the whole query / key projection (pruning heads changes what they average over);
`norm_topk_prob` says whether the chosen gates are renormalised."""

import dataclasses

from regrow.compress.families.base import FAMILIES, FamilyAdapter
from regrow.compress.families.mixtral import MixtralAdapter


@FAMILIES.register("olmoe")
class OlmoeAdapter(MixtralAdapter):
    model_types = ("olmoe",)
    experts_key = "num_experts"
    roles = dataclasses.replace(MixtralAdapter.roles, q_norm="self_attn.q_norm", k_norm="self_attn.k_norm")
    renormalises_top_k = FamilyAdapter.renormalises_top_k  # the config says (Mixtral always renormalises)
