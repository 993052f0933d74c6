"""OLMo-2: Llama-like projections, but norms after each sublayer (they write into the residual)
and RMS q/k norms over the whole query / key projection, so pruning heads changes the set of
dimensions those norms average over (the masked model averages over kept heads only)."""

from regrow.compress.families.base import FamilyAdapter, LayerRoles


class Olmo2Adapter(FamilyAdapter):
    name = "olmo2"
    model_types = ("olmo2",)
    layers_path = "model.layers"
    embedding = "model.embed_tokens"
    final_norm = "model.norm"
    lm_head = "lm_head"
    roles = LayerRoles(
        q=("self_attn.q_proj",),
        kv=("self_attn.k_proj", "self_attn.v_proj"),
        attn_out="self_attn.o_proj",
        mlp_in=("mlp.gate_proj", "mlp.up_proj"),
        mlp_out="mlp.down_proj",
        writers=("post_attention_layernorm", "post_feedforward_layernorm"),
        q_norm="self_attn.q_norm",
        k_norm="self_attn.k_norm",
    )
