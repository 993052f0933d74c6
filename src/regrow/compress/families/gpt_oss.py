"""OpenAI gpt-oss (`gpt_oss`): grouped-query attention with biases and a learned attention sink
per head (`self_attn.sinks`: an extra logit in each head's softmax, sliced with the heads),
sliding-window and full layers alternating (`layer_types`, following the kept layers), and a
mixture of experts in every layer. The router (`mlp.router`, a weight and a bias) takes the top-k
logits and softmaxes over those k alone. The experts are stored transposed, [experts, in, out],
with the gate and up columns of gate_up_proj interleaved (gate0, up0, gate1, ...) and biases on
both projections, gated by a clamped SwiGLU ((up + 1) x gate x sigmoid(alpha gate), both
clamped): an expert channel is a pair of columns and its bias pair. The expert width is the
config's `intermediate_size`.
"""

import dataclasses

import torch

from regrow.compress.families.base import FAMILIES, Axis, LayerRoles
from regrow.compress.families.llama import LlamaAdapter
from regrow.compress.families.mixtral import MixtralAdapter
from regrow.compress.shape import ArchShape


@FAMILIES.register("gpt_oss")
class GptOssAdapter(LlamaAdapter):
    model_types = ("gpt_oss",)
    experts_key = "num_local_experts"
    expert_width_key = "intermediate_size"
    roles = dataclasses.replace(MixtralAdapter.roles, head_params=("self_attn.sinks",), router="mlp.router",
                                router_bias="mlp.router.bias")

    def route(self, config, router, router_args, logits, dropped, top_k, top_groups=None):
        top, chosen = torch.topk(logits.masked_fill(dropped, -torch.inf), top_k, dim=-1)
        return torch.softmax(top, dim=-1, dtype=top.dtype), chosen

    def expert_axes(self, r: LayerRoles, shape: ArchShape, hidden_in: Axis) -> dict[str, tuple[Axis, ...]]:
        """[experts, in, out] tensors: gate_up_proj's columns are channel pairs (gate, up), its
        bias the same pairs; down_proj's rows are channels, its columns and bias write the hidden."""
        expert, folded = Axis(0, "expert"), Axis(0, "expert", 1, "unit")
        pairs, writer = Axis(1, "expert_mlp", 2), Axis(1, "hidden", 1, "writer")
        return {
            f"{r.experts}.gate_up_proj": (expert, Axis(1, "hidden", 1, hidden_in.fold), Axis(2, "expert_mlp", 2)),
            f"{r.experts}.gate_up_proj_bias": (expert, pairs),
            f"{r.experts}.down_proj": (folded, Axis(1, "expert_mlp", 1, "unit"), Axis(2, "hidden", 1, "writer")),
            f"{r.experts}.down_proj_bias": (folded, writer),
        }
