"""TII Falcon-H1 (`falcon_h1`): every layer runs a Mamba-2 mixer and attention in parallel on the
same normed input (their outputs, each times a constant multiplier, are added to the residual),
then a SwiGLU MLP (`feed_forward`).

The Mamba width is stated by the config (`mamba_d_ssm`; the export sets it to heads x
mamba_d_head), so Mamba heads prune independently of the hidden size, within groups. The
gated norm is optional (`mamba_rms_norm`) and may normalise before the gate
(`mamba_norm_before_gate`). The muP multipliers (embedding, LM head, key, attention in/out,
SSM in/out, the five in_proj segment factors `ssm_multipliers` and the MLP's two) are constants
of the config that do not depend on the pruned sizes, so they stay; the model rebuilds its
per-channel `mup_vector` from the pruned sizes, segment by segment.
"""

from regrow.compress.families.base import FAMILIES, FamilyAdapter, LayerRoles


@FAMILIES.register("falcon_h1")
class FalconH1Adapter(FamilyAdapter):
    model_types = ("falcon_h1",)
    layers_path = "model.layers"
    embedding = "model.embed_tokens"
    final_norm = "model.final_layernorm"
    lm_head = "lm_head"
    mamba_keys = {"mamba_num_heads": "mamba_n_heads", "mamba_head_dim": "mamba_d_head", "mamba_groups": "mamba_n_groups",
                  "mamba_state": "mamba_d_state"}
    mamba_width_key = "mamba_d_ssm"
    roles = LayerRoles(
        q=("self_attn.q_proj",),
        kv=("self_attn.k_proj", "self_attn.v_proj"),
        attn_out="self_attn.o_proj",
        mlp_in=("feed_forward.gate_proj", "feed_forward.up_proj"),
        mlp_out="feed_forward.down_proj",
        norms=("input_layernorm", "pre_ff_layernorm"),
        writers=("self_attn.o_proj", "mamba.out_proj", "feed_forward.down_proj"),
        mamba="mamba",
    )
    per_layer_fields = ()  # its `layer_types` is ["hybrid"] x layers, derived from num_hidden_layers

    def embedding_scale(self, config) -> float:
        """The model multiplies token embeddings by `embedding_multiplier` only when it looks them up
        itself, so the layer-by-layer path (which passes embeddings in) applies it."""
        return float(config.embedding_multiplier)
