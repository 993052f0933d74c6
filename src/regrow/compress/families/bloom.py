"""Bloom: fused QKV interleaved per head, ALiBi, LayerNorm after the embeddings, MLP fixed at
4 x hidden, head_dim = hidden_size / heads, tied embeddings.

ALiBi: HF derives the slopes from the head count, so a model with fewer heads gives the heads
that stay different slopes than they were trained with. regrow keeps the kept heads in their
original order and lets them take HF's slopes for the new count (head k of the pruned model
gets slope k of an H'-head model): the steepest kept head stays the steepest. The masked model
used for the exactness check and for scoring the final mask uses exactly those slopes;
importance scores and mask training see the original slopes. Continued training adapts the
heads to their new slopes.
"""

from __future__ import annotations

import torch

from regrow.compress.families.base import FAMILIES, FamilyAdapter, LayerRoles
from regrow.errors import RegrowError


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """The slopes HF Bloom uses for `num_heads` heads (its own function, so they always agree)."""
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes

    return _get_alibi_slopes(num_heads, torch.device("cpu")).double()


@FAMILIES.register("bloom")
class BloomAdapter(FamilyAdapter):
    model_types = ("bloom",)
    layers_path = "transformer.h"
    embedding = "transformer.word_embeddings"
    embedding_norm = "transformer.word_embeddings_layernorm"
    final_norm = "transformer.ln_f"
    lm_head = "lm_head"
    head_dim_from_hidden = True
    grouped_attention = False
    mlp_ratio_fixed = 4
    roles = LayerRoles(
        qkv_fused="self_attention.query_key_value",
        attn_out="self_attention.dense",
        mlp_in=("mlp.dense_h_to_4h",),
        mlp_out="mlp.dense_4h_to_h",
        norms=("input_layernorm", "post_attention_layernorm"),
        writers=("self_attention.dense", "mlp.dense_4h_to_h"),
    )

    def check_model(self, model) -> None:
        config = model.config
        if getattr(config, "apply_residual_connection_post_layernorm", False):
            raise RegrowError("bloom with apply_residual_connection_post_layernorm=true is not supported for pruning")
        if getattr(config, "slow_but_exact", False) and getattr(config, "pretraining_tp", 1) > 1:
            raise RegrowError("bloom with slow_but_exact=true and pretraining_tp > 1 is not supported for pruning; "
                              "set slow_but_exact=false in config.json")

    def extra_mask_hooks(self, model, hooks) -> list:
        """Give the kept heads the slopes of the pruned head count when the mask is final."""
        heads = model.config.n_head
        old = alibi_slopes(heads)

        def make(index: int):
            def pre_hook(module, args, kwargs):
                masks = hooks.masks
                if not hooks.final or masks is None or masks.head is None or "alibi" not in kwargs:
                    return None
                kept = torch.nonzero(masks.head[index] != 0).flatten()
                ratio = torch.ones(heads, dtype=torch.float64)
                ratio[kept] = alibi_slopes(len(kept)) / old[kept]
                alibi = kwargs["alibi"]
                scaled = alibi.view(-1, heads, *alibi.shape[1:]) * ratio.to(alibi.device, alibi.dtype).view(1, heads, 1, 1)
                return args, {**kwargs, "alibi": scaled.view_as(alibi)}

            return pre_hook

        return [layer.register_forward_pre_hook(make(i), with_kwargs=True) for i, layer in enumerate(self.layers(model))]
