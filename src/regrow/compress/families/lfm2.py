"""Liquid LFM2 (`lfm2`): a hybrid of short-convolution layers and attention layers (`layer_types`:
"conv" / "full_attention"), each followed by a SwiGLU MLP (`feed_forward`: w1 gate, w3 up, w2
down). A short-convolution operator projects the input to [B | C | x] (`in_proj`, hidden rows
each), runs a depthwise causal conv over B x x and multiplies by C before `out_proj`.

Its channels are as many as the hidden size (the HF class has no other width for them), so they
prune with the hidden size but as units of their own (`conv`, chosen per layer by their own
score, docs/ALGORITHMS.md §14), not as the residual's hidden channels. The MLP width is derived
from `intermediate_size` (2/3 of it, times `block_ffn_dim_multiplier`, rounded up to
`block_multiple_of`) while `block_auto_adjust_ff_dim` is set: regrow reads the real width and the
export states it with the adjustment off. Attention has per-head q/k RMSNorms (kept whole) and
`head_dim` is written to the config. The final norm is called `embedding_norm`.
"""

from regrow.compress.families.base import FAMILIES, FamilyAdapter, LayerRoles
from regrow.compress.shape import ArchShape


def mlp_width(config) -> int:
    """The MLP width the HF class builds from the config (Lfm2MLP's own rule)."""
    width = config.intermediate_size
    if config.block_auto_adjust_ff_dim:
        width = int(2 * width / 3)
        if config.block_ffn_dim_multiplier is not None:
            width = int(config.block_ffn_dim_multiplier * width)
            width = config.block_multiple_of * ((width + config.block_multiple_of - 1) // config.block_multiple_of)
    return width


@FAMILIES.register("lfm2")
class Lfm2Adapter(FamilyAdapter):
    model_types = ("lfm2",)
    layers_path = "model.layers"
    embedding = "model.embed_tokens"
    final_norm = "model.embedding_norm"
    lm_head = "lm_head"
    roles = LayerRoles(
        q=("self_attn.q_proj",),
        kv=("self_attn.k_proj", "self_attn.v_proj"),
        attn_out="self_attn.out_proj",
        mlp_in=("feed_forward.w1", "feed_forward.w3"),
        mlp_out="feed_forward.w2",
        norms=("operator_norm", "ffn_norm"),
        writers=("self_attn.out_proj", "conv.out_proj", "feed_forward.w2"),
        head_norms=("self_attn.q_layernorm", "self_attn.k_layernorm"),
        short_conv="conv",
    )

    def shape(self, config) -> ArchShape:
        kinds = tuple("conv" if kind == "conv" else "attention" for kind in config.layer_types)
        return super().shape(config).replace(intermediate_size=mlp_width(config), layer_kinds=kinds)

    def target_config(self, config, target: ArchShape, kept_layers: list[int]):
        new = super().target_config(config, target, kept_layers)
        new.block_auto_adjust_ff_dim = False  # intermediate_size is the MLP width itself
        return new
