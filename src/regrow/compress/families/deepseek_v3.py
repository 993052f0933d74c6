"""DeepSeek-V3 (`deepseek_v3`, also Kimi-K2 and other V3 descendants in this layout): multi-head
latent attention (MLA) with DeepSeek's mixture of experts (families/deepseek_moe.py: dense first
layers, routed experts behind a group-limited sigmoid router with a score-correction bias,
shared experts; families/routing.py).

MLA (docs/ALGORITHMS.md §15): the query comes from a low-rank latent (q_a_proj -> q_a_layernorm
-> q_b_proj, `q_lora_rank`; or one q_proj when it is null), keys and values from a latent shared
by every head (kv_a_proj_with_mqa -> kv_a_layernorm -> kv_b_proj, `kv_lora_rank`), plus one
RoPE key shared by every head. A head is its query rows [nope | rope] in q_b_proj, its key-nope
and value rows in kv_b_proj and its value columns of o_proj; it prunes whole, so the nope/rope
split stays. The latent ranks are units of their own. Every head has its own key (no grouping):
`num_key_value_heads` follows `num_attention_heads`. Multi-token-prediction layers are not part
of the HF model and are not carried.
"""

from regrow.compress.families.base import FAMILIES, FamilyAdapter
from regrow.compress.families.deepseek_moe import DeepSeekMoeLayout, moe_roles
from regrow.compress.families.routing import GroupLimitedRouting
from regrow.compress.shape import ArchShape


class LatentAttention:
    """MLA's shape and config (mixed in before FamilyAdapter): ArchShape.head_dim is the nope
    part of a head's query/key, qk_rope_head_dim the rope part, v_head_dim its value size."""

    grouped_attention = False  # one key per head

    def shape(self, config) -> ArchShape:
        return super().shape(config).replace(
            head_dim=config.qk_nope_head_dim, qk_rope_head_dim=config.qk_rope_head_dim, v_head_dim=config.v_head_dim,
            q_lora_rank=config.q_lora_rank or 0, kv_lora_rank=config.kv_lora_rank)

    def complete_spec(self, spec: dict, source: ArchShape) -> dict:
        spec = super().complete_spec(spec, source)
        if "num_attention_heads" in spec:
            spec.setdefault("num_key_value_heads", spec["num_attention_heads"])
        return spec

    def target_config(self, config, target: ArchShape, kept_layers: list[int]):
        new = super().target_config(config, target, kept_layers)
        new.head_dim = config.head_dim  # the config's own meaning (the rope part), not regrow's
        new.num_key_value_heads = target.num_attention_heads
        new.kv_lora_rank = target.kv_lora_rank
        if config.q_lora_rank is not None:
            new.q_lora_rank = target.q_lora_rank
        return new


MLA_ROLES = dict(attn_out="self_attn.o_proj", mla="self_attn")


@FAMILIES.register("deepseek_v3")
class DeepseekV3Adapter(GroupLimitedRouting, LatentAttention, DeepSeekMoeLayout, FamilyAdapter):
    model_types = ("deepseek_v3",)
    layers_path = "model.layers"
    embedding = "model.embed_tokens"
    final_norm = "model.norm"
    lm_head = "lm_head"
    roles = moe_roles(**MLA_ROLES)
