"""GPT-NeoX (Pythia, RedPajama-INCITE): fused QKV interleaved per head ([head, q|k|v, head_dim]),
parallel (or sequential) residual, partial rotary inside each head, LayerNorm with bias.

The HF class derives head_dim = hidden_size / heads, so hidden size and head count must shrink
together; it has no grouped-query attention.
"""

from regrow.compress.families.base import FAMILIES, FamilyAdapter, LayerRoles


@FAMILIES.register("gpt_neox")
class GPTNeoXAdapter(FamilyAdapter):
    model_types = ("gpt_neox",)
    layers_path = "gpt_neox.layers"
    embedding = "gpt_neox.embed_in"
    final_norm = "gpt_neox.final_layer_norm"
    lm_head = "lm_head"
    head_dim_from_hidden = True
    grouped_attention = False
    roles = LayerRoles(
        qkv_fused="attention.query_key_value",
        attn_out="attention.dense",
        mlp_in=("mlp.dense_h_to_4h",),
        mlp_out="mlp.dense_4h_to_h",
        norms=("input_layernorm", "post_attention_layernorm"),
        writers=("attention.dense", "mlp.dense_4h_to_h"),
    )
