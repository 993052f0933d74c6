"""OLMo-hybrid (`olmo_hybrid`): gated-DeltaNet layers ("linear_attention": pre-norm, `linear_attn`
then a SwiGLU MLP, each behind its own norm) mixed with OLMo-2 attention layers ("full_attention":
norms after each sublayer, q/k RMSNorms over the whole projections). The two kinds call different
modules by one name: `post_attention_layernorm` writes into the residual in an attention layer and
feeds the MLP in a DeltaNet layer, and `mlp.down_proj` writes into the residual only in a DeltaNet
layer; so each kind has its own roles (`kind_roles`).

Its DeltaNet keeps every projection apart: q_proj / k_proj (key heads), v_proj and g_proj (the
output gate, per value channel), a_proj / b_proj (one row per value head), a depthwise conv1d over
[q | k | v], per-value-head A_log and dt_bias, a gated RMSNorm per head (`o_norm`, kept whole) and
o_proj.
"""

from regrow.compress.families.base import FAMILIES, Axis, LayerRoles
from regrow.compress.families.llama import LlamaAdapter
from regrow.compress.families.olmo2 import Olmo2Adapter
from regrow.compress.shape import ArchShape


@FAMILIES.register("olmo_hybrid")
class OlmoHybridAdapter(LlamaAdapter):
    model_types = ("olmo_hybrid",)
    roles = LayerRoles(  # a DeltaNet layer
        mlp_in=LlamaAdapter.roles.mlp_in, mlp_out=LlamaAdapter.roles.mlp_out,
        norms=("input_layernorm", "post_attention_layernorm"), writers=("linear_attn.o_proj", "mlp.down_proj"),
        deltanet_out="linear_attn.o_proj")
    kind_roles = {"attention": Olmo2Adapter.roles}

    def shape(self, config) -> ArchShape:
        kinds = tuple("deltanet" if kind == "linear_attention" else "attention" for kind in config.layer_types)
        return super().shape(config).replace(layer_kinds=kinds)

    def deltanet_axes(self, mixer: str, shape: ArchShape, hidden_in: Axis) -> dict[str, tuple[Axis, ...]]:
        k, v = shape.linear_key_head_dim, shape.linear_value_head_dim
        conv = Axis(0, "linear_key", k, stacked=(("linear_key", k), ("linear_key", k), ("linear_head", v)))
        rows = {"q_proj": ("linear_key", k), "k_proj": ("linear_key", k), "v_proj": ("linear_head", v),
                "g_proj": ("linear_head", v), "a_proj": ("linear_head", 1), "b_proj": ("linear_head", 1)}
        return {
            **{f"{mixer}.{name}.weight": (Axis(0, unit, block), hidden_in) for name, (unit, block) in rows.items()},
            f"{mixer}.conv1d.weight": (conv,),
            **{f"{mixer}.{name}": (Axis(0, "linear_head"),) for name in ("dt_bias", "A_log")},
            f"{mixer}.o_norm.weight": (),
        }
