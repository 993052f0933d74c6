"""Llama-like decoders (Llama, Mistral, Qwen2, Granite): separate q/k/v/o, SwiGLU MLP, RMSNorm, GQA.

The HF classes read `head_dim` from the config, so hidden size and head count prune
independently; the exported config states head_dim explicitly. RoPE scaling (`rope_parameters`
of type llama3 or yarn) and Mistral's sliding window act per head and stay as they are.
Granite's embedding, residual and attention multipliers and its logits scaling are constants
that do not depend on the pruned sizes (head_dim is unchanged), so they stay too.
"""

from regrow.compress.families.base import FAMILIES, FamilyAdapter, LayerRoles


@FAMILIES.register("llama-like")
class LlamaAdapter(FamilyAdapter):
    model_types = ("llama", "mistral", "qwen2", "granite")
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
        norms=("input_layernorm", "post_attention_layernorm"),
        writers=("self_attn.o_proj", "mlp.down_proj"),
    )
