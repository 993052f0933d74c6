"""Qwen3-Next (`qwen3_next`): a hybrid whose layers are each a gated DeltaNet (`linear_attn`,
layer type "linear_attention") or gated full attention (`self_attn`, "full_attention"), followed
by Qwen2-MoE's mixture of experts with a shared expert (or a dense MLP in `mlp_only_layers`).

Gated attention: q_proj's rows are, head by head, the head's query then its output gate (the
context is multiplied by sigmoid(gate) before o_proj), so a query head spans 2 x head_dim rows;
the per-head q/k RMSNorms are kept whole. Norms scale by (1 + weight).

The gated DeltaNet fuses its input projections per key head: in_proj_qkvz rows are, for each key
head, [its q | its k | its value heads' v | their z], and in_proj_ba rows [its value heads' b |
their a]; conv1d runs over [all q | all k | all v]. Value heads prune within their key head (the
same number in each) and key heads go with all their value heads (docs/PRUNING.md).
"""

import dataclasses

from regrow.compress.families.base import FAMILIES, Axis, LayerRoles
from regrow.compress.families.qwen2_moe import Qwen2MoeAdapter
from regrow.compress.shape import ArchShape


def deltanet_roles(roles: LayerRoles, mlp_writer: str) -> LayerRoles:
    """A Llama-like family's roles with Qwen's gated-DeltaNet mixer (`linear_attn`) beside
    attention and per-head q/k norms; `mlp_writer` writes the MLP's output into the residual."""
    return dataclasses.replace(roles, writers=("self_attn.o_proj", "linear_attn.out_proj", mlp_writer),
                               head_norms=("self_attn.q_norm", "self_attn.k_norm"), deltanet_out="linear_attn.out_proj")


class GatedDeltaNetHybrid:
    """What Qwen3-Next and Qwen3.5 share: gated attention, norms scaling by (1 + weight), and
    layers of two kinds from `layer_types` (mixed in before the family's base adapter)."""

    norm_offset = 1.0
    query_gate = True

    def shape(self, config) -> ArchShape:
        kinds = tuple("deltanet" if kind == "linear_attention" else "attention" for kind in config.layer_types)
        return super().shape(config).replace(layer_kinds=kinds)


@FAMILIES.register("qwen3_next")
class Qwen3NextAdapter(GatedDeltaNetHybrid, Qwen2MoeAdapter):
    model_types = ("qwen3_next",)
    roles = deltanet_roles(Qwen2MoeAdapter.roles, "mlp")

    def deltanet_axes(self, mixer: str, shape: ArchShape, hidden_in: Axis) -> dict[str, tuple[Axis, ...]]:
        k, v = shape.linear_key_head_dim, shape.linear_value_head_dim
        qkvz = Axis(0, "linear_key", stacked=(("linear_key", k), ("linear_key", k), ("linear_head", v), ("linear_head", v)),
                    groups="linear_key")
        ba = Axis(0, "linear_head", stacked=(("linear_head", 1), ("linear_head", 1)), groups="linear_key")
        conv = Axis(0, "linear_key", stacked=(("linear_key", k), ("linear_key", k), ("linear_head", v)))
        return {
            f"{mixer}.in_proj_qkvz.weight": (qkvz, hidden_in), f"{mixer}.in_proj_ba.weight": (ba, hidden_in),
            f"{mixer}.conv1d.weight": (conv,),
            **{f"{mixer}.{name}": (Axis(0, "linear_head"),) for name in ("dt_bias", "A_log")},
            f"{mixer}.norm.weight": (),
        }
