"""NVIDIA Nemotron-H (`nemotron_h`): a hybrid whose every layer is one norm and one mixer, the
kind given by `layers_block_type`: a Mamba-2 mixer ("mamba" / "linear_attention"), attention
without RoPE ("attention" / "full_attention"), a non-gated MLP (up, relu^2, down: "mlp") or a
mixture of experts ("moe"). All mixers are called `mixer`; the adapter tells them apart by the
layer's kind.

The Mamba width is mamba_num_heads x mamba_head_dim (no expansion factor), so Mamba heads prune
independently of the hidden size, within groups (`n_groups`).

The mixture of experts (Nemotron-H MoE, Nemotron-3): non-gated experts (fused `up_proj`,
`down_proj`), optionally computed in a latent space (`moe_latent_size`: fc1/fc2 latent
projections around the experts; the latent is kept whole), a non-gated shared expert of width
`moe_shared_expert_intermediate_size`, and DeepSeek-V3's group-limited sigmoid router with a
score-correction bias (families/routing.py): experts prune evenly within their `n_group` groups,
or whole groups go. Multi-token-prediction layers are refused.

transformers runs a Nemotron-H only if its first layer holds a cache (Mamba or attention): a
pruned model keeps a first layer of that kind.
"""

import dataclasses

from regrow.compress.families.base import FAMILIES, FamilyAdapter, LayerRoles
from regrow.compress.families.routing import GroupLimitedRouting
from regrow.compress.shape import ArchShape
from regrow.errors import RegrowError

KINDS = {"linear_attention": "mamba", "mamba": "mamba", "full_attention": "attention", "attention": "attention",
         "mlp": "mlp", "moe": "moe"}
EXPERT_FIELDS = ("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", "moe_shared_expert_intermediate_size",
                 "n_group", "topk_group")


@FAMILIES.register("nemotron_h")
class NemotronHAdapter(GroupLimitedRouting, FamilyAdapter):
    model_types = ("nemotron_h",)
    layers_path = "model.layers"
    embedding = "model.embeddings"
    final_norm = "model.norm_f"
    lm_head = "lm_head"
    experts_key = "n_routed_experts"
    shared_width_key = "moe_shared_expert_intermediate_size"
    mamba_keys = {"mamba_num_heads": "mamba_num_heads", "mamba_head_dim": "mamba_head_dim", "mamba_groups": "n_groups",
                  "mamba_state": "ssm_state_size"}
    roles = LayerRoles(
        q=("mixer.q_proj",),
        kv=("mixer.k_proj", "mixer.v_proj"),
        attn_out="mixer.o_proj",
        mlp_in=("mixer.up_proj",),
        mlp_out="mixer.down_proj",
        norms=("norm",),
        writers=("mixer.o_proj", "mixer.down_proj", "mixer.out_proj"),
        mamba="mixer",
    )
    kind_roles = {"moe": LayerRoles(
        norms=("norm",),
        writers=("mixer",),
        router="mixer.gate",
        router_bias="mixer.gate.e_score_correction_bias",
        experts="mixer.experts",
        experts_gated=False,
        moe_block="mixer",
        shared_in=("mixer.shared_experts.up_proj",),
        shared_out="mixer.shared_experts.down_proj",
        latent_in="mixer.fc1_latent_proj",
        latent_out="mixer.fc2_latent_proj",
    )}
    per_layer_fields = ("layers_block_type",)
    first_layer_kinds = ("mamba", "attention")  # transformers reads the first layer's cache: MLP / MoE hold none

    def shape(self, config) -> ArchShape:
        kinds = tuple(KINDS[kind] for kind in config.layers_block_type)
        shape = super().shape(config).replace(layer_kinds=kinds)
        if "mlp" not in kinds:  # no dense MLP layer: intermediate_size sizes nothing
            shape = shape.replace(intermediate_size=0)
        if "moe" not in kinds:  # the config's expert fields size nothing either
            shape = dataclasses.replace(shape, **{field: 0 for field in (
                "num_experts", "num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size",
                "n_group", "topk_group", "moe_latent_size")})
        if "mamba" not in kinds:  # nor its Mamba fields
            shape = shape.replace(mamba_num_heads=0, mamba_head_dim=0, mamba_groups=0)
        return shape

    def moe_layers(self, config) -> list[bool]:
        return [KINDS[kind] == "moe" for kind in config.layers_block_type]

    def target_config(self, config, target: ArchShape, kept_layers: list[int]):
        new = super().target_config(config, target, kept_layers)
        if not target.num_experts:  # a dense model keeps the expert fields its config was given
            for field in EXPERT_FIELDS:
                setattr(new, field, getattr(config, field))
        if not target.intermediate_size:
            new.intermediate_size = config.intermediate_size
        if not target.mamba_num_heads:
            new.mamba_num_heads, new.n_groups = config.mamba_num_heads, config.n_groups
            new.mamba_head_dim = config.mamba_head_dim
        return new

    def check_model(self, model) -> None:
        if getattr(model.config, "num_nextn_predict_layers", 0):
            raise RegrowError("nemotron_h with multi-token-prediction layers (num_nextn_predict_layers > 0) is not "
                              "supported for pruning yet")
