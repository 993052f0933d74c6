"""Gemma-2: Llama-like projections with a GeGLU MLP, "sandwich" RMSNorms and a scaled embedding.

- RMSNorm multiplies by (1 + weight): a mask value m folds as (1 + w) m - 1 (`norm_offset`), and
  the masked model's norms use 1 + w too.
- input_layernorm / pre_feedforward_layernorm feed the sublayers; post_attention_layernorm /
  post_feedforward_layernorm normalise the sublayer's output before it is added to the residual,
  so they are the residual writers (they carry the layer gate and the hidden mask), as in OLMo-2.
- The embedding output is multiplied by sqrt(hidden_size) taken from the config, so a pruned
  hidden size H' would rescale it by sqrt(H' / H). Compensated exactly: the pruned embedding
  table is multiplied by sqrt(H / H'); with tied embeddings the LM head is that same table, so
  the logits would grow by sqrt(H / H'): the inverse is folded into the final norm,
  (1 + w') = (1 + w) sqrt(H' / H). transformers casts the scale to the weights' dtype, so the
  ratio is taken between sqrt(H) and sqrt(H') as that dtype rounds them (bf16: 8 significant
  bits; an fp32 ratio would leave up to ~0.4% systematic error in a bf16 export). Attention and final-logit soft-capping act on the unchanged
  scores and logits.
- head_dim and query_pre_attn_scalar are explicit in the config and stay; the sliding-window
  `layer_types` follow the kept layers.
"""

import dataclasses

import torch

from regrow.compress.families.base import FAMILIES
from regrow.compress.families.llama import LlamaAdapter


@FAMILIES.register("gemma2")
class Gemma2Adapter(LlamaAdapter):
    model_types = ("gemma2",)
    norm_offset = 1.0
    roles = dataclasses.replace(
        LlamaAdapter.roles,
        norms=("input_layernorm", "pre_feedforward_layernorm"),
        writers=("post_attention_layernorm", "post_feedforward_layernorm"),
    )

    def embedding_scale(self, config) -> float:
        return config.hidden_size ** 0.5

    def rescale(self, name: str, tensor, source_hidden: int, target_hidden: int, tied: bool):
        if target_hidden == source_hidden:
            return tensor
        # the pruned model multiplies by sqrt(H') instead of sqrt(H), each rounded to the weights' dtype
        # first (transformers casts the scale to it), so the ratio is taken between the rounded scales
        ratio = _in_dtype(source_hidden**0.5, tensor.dtype) / _in_dtype(target_hidden**0.5, tensor.dtype)
        if name == f"{self.embedding}.weight":
            return (tensor.double() * ratio).to(tensor.dtype)
        if tied and name == f"{self.final_norm}.weight":
            return ((tensor.double() + 1.0) / ratio - 1.0).to(tensor.dtype)
        return tensor


def _in_dtype(value: float, dtype: torch.dtype) -> float:
    """`value` as the model computes with it in `dtype` (bf16 keeps 8 significant bits)."""
    return float(torch.tensor(value, dtype=torch.float64).to(dtype))
