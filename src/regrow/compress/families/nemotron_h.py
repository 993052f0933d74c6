"""NVIDIA Nemotron-H (`nemotron_h`): a hybrid whose every layer is one norm and one mixer, the
kind given by `layers_block_type`: a Mamba-2 mixer ("mamba" / "linear_attention"), attention
without RoPE ("attention" / "full_attention"), or a non-gated MLP (up, relu^2, down: "mlp"). All
mixers are called `mixer`; the adapter tells them apart by what they hold.

The Mamba width is mamba_num_heads x mamba_head_dim (no expansion factor), so Mamba heads prune
independently of the hidden size, within groups (`n_groups`). The mixture-of-experts layers of the
Nemotron-H MoE models ("moe": a DeepSeek-style router with a score-correction bias and grouped
top-k) are not handled yet and are refused.
"""

from regrow.compress.families.base import FAMILIES, FamilyAdapter, LayerRoles
from regrow.compress.shape import ArchShape
from regrow.errors import RegrowError

KINDS = {"linear_attention": "mamba", "mamba": "mamba", "full_attention": "attention", "attention": "attention",
         "mlp": "mlp", "moe": "moe"}


@FAMILIES.register("nemotron_h")
class NemotronHAdapter(FamilyAdapter):
    model_types = ("nemotron_h",)
    layers_path = "model.layers"
    embedding = "model.embeddings"
    final_norm = "model.norm_f"
    lm_head = "lm_head"
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
    per_layer_fields = ("layers_block_type",)

    def shape(self, config) -> ArchShape:
        return super().shape(config).replace(layer_kinds=tuple(KINDS[kind] for kind in config.layers_block_type))

    def check_model(self, model) -> None:
        kinds = set(model.config.layers_block_type)
        if "moe" in kinds:
            raise RegrowError("nemotron_h with mixture-of-experts layers (layers_block_type 'moe': a DeepSeek-style "
                              "router) is not supported for pruning yet; supported: Mamba-2, attention and MLP layers")
        if getattr(model.config, "num_nextn_predict_layers", 0):
            raise RegrowError("nemotron_h with multi-token-prediction layers (num_nextn_predict_layers > 0) is not "
                              "supported for pruning yet")
