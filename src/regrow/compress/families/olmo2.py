"""OLMo-2: Llama-like projections, but norms after each sublayer (they write into the residual)
and RMS q/k norms over the whole query / key projection, so pruning heads changes the set of
dimensions those norms average over (the masked model averages over kept heads only). OLMo-3 has
the same layout plus sliding-window `layer_types`, which follow the kept layers."""

import dataclasses

from regrow.compress.families.base import FAMILIES
from regrow.compress.families.llama import LlamaAdapter


@FAMILIES.register("olmo2")
class Olmo2Adapter(LlamaAdapter):
    model_types = ("olmo2", "olmo3")
    roles = dataclasses.replace(
        LlamaAdapter.roles,
        norms=(),
        writers=("post_attention_layernorm", "post_feedforward_layernorm"),
        q_norm="self_attn.q_norm",
        k_norm="self_attn.k_norm",
    )
