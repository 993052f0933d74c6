"""Granite-4 (`granitemoehybrid`): a hybrid whose layers are each a Mamba-2 mixer or attention
(`layer_types`: "mamba" / "linear_attention" or "attention"), followed by a mixture of experts
(`block_sparse_moe`: router + fused experts of width `intermediate_size`) plus a shared SwiGLU
MLP (`shared_mlp`, fused [gate | up] `input_linear` of `shared_intermediate_size`); with
`num_local_experts` 0 the shared MLP is the only MLP.

Granite's multipliers (embedding, residual, attention, logits) are constants that do not depend
on the pruned sizes. The HF class derives the Mamba width as int(mamba_expand x hidden_size) with
a whole-number `mamba_expand`, so mamba heads x mamba_d_head must stay a multiple of hidden_size
(checked before any work). The router takes the top-k logits and a softmax over them, which is a
softmax over all experts renormalised over the chosen k: a sliced router gives the same gates.
"""


from regrow.compress.families.base import FAMILIES, LayerRoles
from regrow.compress.families.llama import LlamaAdapter
from regrow.compress.shape import ArchShape


@FAMILIES.register("granitemoehybrid")
class GraniteMoeHybridAdapter(LlamaAdapter):
    model_types = ("granitemoehybrid",)
    experts_key = "num_local_experts"
    expert_width_key = "intermediate_size"
    shared_width_key = "shared_intermediate_size"
    mamba_keys = {"mamba_num_heads": "mamba_n_heads", "mamba_head_dim": "mamba_d_head", "mamba_groups": "mamba_n_groups",
                  "mamba_state": "mamba_d_state"}
    mamba_expand_key = "mamba_expand"
    roles = LayerRoles(
        q=("self_attn.q_proj",),
        kv=("self_attn.k_proj", "self_attn.v_proj"),
        attn_out="self_attn.o_proj",
        norms=("input_layernorm", "post_attention_layernorm"),
        writers=("self_attn.o_proj", "mamba.out_proj", "block_sparse_moe", "shared_mlp.output_linear"),
        router="block_sparse_moe.router",
        experts="block_sparse_moe.experts",
        moe_block="block_sparse_moe",
        shared_in_stacked="shared_mlp.input_linear",
        shared_out="shared_mlp.output_linear",
        mamba="mamba",
    )

    def shape(self, config) -> ArchShape:
        kinds = tuple("mamba" if kind in ("mamba", "linear_attention") else "attention" for kind in config.layer_types)
        shape = super().shape(config).replace(layer_kinds=kinds)
        if not config.num_local_experts:  # dense Granite-4: the shared MLP is the MLP
            return shape.replace(moe_intermediate_size=0, num_experts_per_tok=0)
        return shape

    def moe_layers(self, config) -> list[bool]:
        return [bool(config.num_local_experts)] * config.num_hidden_layers

    def renormalises_top_k(self, config) -> bool:
        return True

    def target_config(self, config, target: ArchShape, kept_layers: list[int]):
        new = super().target_config(config, target, kept_layers)
        if not config.num_local_experts:
            new.intermediate_size, new.num_experts_per_tok = config.intermediate_size, config.num_experts_per_tok
        return new
