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

from regrow.compress.families.base import FAMILIES, Axis
from regrow.compress.families.qwen2_moe import Qwen2MoeAdapter
from regrow.compress.shape import ArchShape


def deltanet_kinds(config) -> tuple[str, ...]:
    """Layer kinds of a gated-DeltaNet hybrid, from its `layer_types`."""
    return tuple("deltanet" if kind == "linear_attention" else "attention" for kind in config.layer_types)


@FAMILIES.register("qwen3_next")
class Qwen3NextAdapter(Qwen2MoeAdapter):
    model_types = ("qwen3_next",)
    norm_offset = 1.0
    query_gate = True
    roles = dataclasses.replace(
        Qwen2MoeAdapter.roles,
        writers=("self_attn.o_proj", "linear_attn.out_proj", "mlp"),
        head_norms=("self_attn.q_norm", "self_attn.k_norm"),
        deltanet_out="linear_attn.out_proj",
    )

    def shape(self, config) -> ArchShape:
        return super().shape(config).replace(layer_kinds=deltanet_kinds(config))

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
