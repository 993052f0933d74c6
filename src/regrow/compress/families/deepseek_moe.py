"""DeepSeek's mixture-of-experts layout, shared by DeepSeek-V2/V3 and GLM-4-MoE: the first
`first_k_dense_replace` layers have a dense SwiGLU MLP (`intermediate_size`), every later one
routed experts (fused `mlp.experts`, router `mlp.gate`) plus `n_shared_experts` shared experts
fused into one SwiGLU MLP (`mlp.shared_experts`) of width moe_intermediate_size x
n_shared_experts, added without a gate.

The shared width has no config key of its own: a target names it as
`shared_expert_intermediate_size`, a whole multiple of the target's expert width (the export
sets `n_shared_experts` to the quotient); a target that changes the expert width without naming
it keeps the number of shared experts. Kept dense layers stay first, so the export's
`first_k_dense_replace` is how many of them are kept.
"""

from regrow.compress.families.base import LayerRoles
from regrow.compress.shape import ArchShape
from regrow.errors import RegrowError

MOE_ROLES = dict(
    mlp_in=("mlp.gate_proj", "mlp.up_proj"),  # the dense layers
    mlp_out="mlp.down_proj",
    norms=("input_layernorm", "post_attention_layernorm"),
    router="mlp.gate",
    router_bias="mlp.gate.e_score_correction_bias",
    experts="mlp.experts",
    moe_block="mlp",
    shared_in=("mlp.shared_experts.gate_proj", "mlp.shared_experts.up_proj"),
    shared_out="mlp.shared_experts.down_proj",
)


def moe_roles(**attention) -> LayerRoles:
    """The layout's roles with a family's attention roles; the attention output and the MLP write."""
    return LayerRoles(**attention, **MOE_ROLES, writers=(attention["attn_out"], "mlp"))


class DeepSeekMoeLayout:
    """Mixed in before FamilyAdapter (after the routing mixin)."""

    experts_key = "n_routed_experts"

    def shape(self, config) -> ArchShape:
        shape = super().shape(config)
        return shape.replace(shared_expert_intermediate_size=config.moe_intermediate_size * config.n_shared_experts)

    def moe_layers(self, config) -> list[bool]:
        return [i >= config.first_k_dense_replace for i in range(config.num_hidden_layers)]

    def layer_overrides(self, config, index: int) -> dict:
        return {**super().layer_overrides(config, index), "first_k_dense_replace": int(index < config.first_k_dense_replace)}

    def complete_spec(self, spec: dict, source: ArchShape) -> dict:
        spec = super().complete_spec(spec, source)
        if "moe_intermediate_size" in spec and "shared_expert_intermediate_size" not in spec:
            count = source.shared_expert_intermediate_size // source.moe_intermediate_size
            spec["shared_expert_intermediate_size"] = count * spec["moe_intermediate_size"]
        return spec

    def check_target(self, source: ArchShape, target: ArchShape) -> None:
        super().check_target(source, target)
        shared, width = target.shared_expert_intermediate_size, target.moe_intermediate_size
        if shared % width:
            raise RegrowError(f"{self.name} sizes its shared experts as n_shared_experts x moe_intermediate_size: target "
                              f"shared_expert_intermediate_size {shared} is not a multiple of moe_intermediate_size {width}; "
                              f"allowed: {', '.join(str(width * n) for n in range(1, source.shared_expert_intermediate_size // width + 1))}")

    def target_config(self, config, target: ArchShape, kept_layers: list[int]):
        new = super().target_config(config, target, kept_layers)
        new.n_shared_experts = target.shared_expert_intermediate_size // target.moe_intermediate_size
        new.first_k_dense_replace = sum(old < config.first_k_dense_replace for old in kept_layers)
        return new
