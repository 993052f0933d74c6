"""Phi-3 / Phi-4-mini: Llama-like layers with two fused projections, both stacked rather than
interleaved: `qkv_proj` rows are [all query heads | all key heads | all value heads] (not per
head as GPT-NeoX's) and `gate_up_proj` rows are [gate channels | up channels]; each range is sliced
on its own. The config has no head_dim (HF derives hidden_size / num_attention_heads, and
checks longrope factors against it), so a target keeps hidden_size = heads x head_dim; partial
rotary (`partial_rotary_factor`) and longrope scaling stay as they are."""

from regrow.compress.families.base import FAMILIES, FamilyAdapter, LayerRoles


@FAMILIES.register("phi3")
class Phi3Adapter(FamilyAdapter):
    model_types = ("phi3",)
    layers_path = "model.layers"
    embedding = "model.embed_tokens"
    final_norm = "model.norm"
    lm_head = "lm_head"
    head_dim_from_hidden = True
    roles = LayerRoles(
        qkv_stacked="self_attn.qkv_proj",
        attn_out="self_attn.o_proj",
        mlp_in_stacked="mlp.gate_up_proj",
        mlp_out="mlp.down_proj",
        norms=("input_layernorm", "post_attention_layernorm"),
        writers=("self_attn.o_proj", "mlp.down_proj"),
    )
