"""Qwen2-MoE: Llama-like attention (q/k/v biases); MLP layers are mixtures of experts with a
shared expert (a SwiGLU MLP of `shared_expert_intermediate_size` channels, added through a
sigmoid gate `shared_expert_gate`), except the layers in `mlp_only_layers` or off the
`decoder_sparse_step` pattern, which are dense MLPs of `intermediate_size`. After layers are
removed the exported config lists the kept dense layers in `mlp_only_layers` with
`decoder_sparse_step` 1, which says the same for the new numbering."""

from regrow.compress.families.base import FAMILIES, LayerRoles
from regrow.compress.families.llama import LlamaAdapter


@FAMILIES.register("qwen2_moe")
class Qwen2MoeAdapter(LlamaAdapter):
    model_types = ("qwen2_moe",)
    experts_key = "num_experts"
    shared_width_key = "shared_expert_intermediate_size"
    roles = LayerRoles(
        q=("self_attn.q_proj",),
        kv=("self_attn.k_proj", "self_attn.v_proj"),
        attn_out="self_attn.o_proj",
        mlp_in=("mlp.gate_proj", "mlp.up_proj"),  # the dense layers
        mlp_out="mlp.down_proj",
        norms=("input_layernorm", "post_attention_layernorm"),
        writers=("self_attn.o_proj", "mlp"),
        router="mlp.gate",
        experts="mlp.experts",
        moe_block="mlp",
        shared_in=("mlp.shared_expert.gate_proj", "mlp.shared_expert.up_proj"),
        shared_out="mlp.shared_expert.down_proj",
        shared_gate="mlp.shared_expert_gate",
    )

    def moe_layers(self, config) -> list[bool]:
        dense = set(getattr(config, "mlp_only_layers", None) or [])
        step = getattr(config, "decoder_sparse_step", 1) or 1
        return [i not in dense and config.num_experts > 0 and (i + 1) % step == 0 for i in range(config.num_hidden_layers)]

    def layer_overrides(self, config, index: int) -> dict:
        moe = self.moe_layers(config)[index]
        return {**super().layer_overrides(config, index), "decoder_sparse_step": 1, "mlp_only_layers": [] if moe else [0]}

    def target_config(self, config, target, kept_layers: list[int]):
        new = super().target_config(config, target, kept_layers)
        moe = self.moe_layers(config)
        new.decoder_sparse_step = 1
        new.mlp_only_layers = [new_index for new_index, old in enumerate(kept_layers) if not moe[old]]
        return new
