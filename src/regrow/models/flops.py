"""FLOPs per token from a model's real shape (docs/ALGORITHMS.md §8).

training FLOPs/token = 6 * N_nonembedding + 6 * lm_head_params + 12 * L * H * d_head * T
(attention scores and values, no causal discount); a forward pass alone is a third of that.
In a mixture of experts a token runs through k of the E experts of a layer, so the fused expert
weights ([experts, ...] tensors) count k/E: N_nonembedding is the active parameters (docs/ALGORITHMS.md §9).
In a hybrid only the attention layers pay the attention term (num_layers counts those; a short
convolution is parameters, in 6N), and each Mamba-2 layer adds its scan, 5 x heads x head_dim x
state FLOPs per token forward, each gated-DeltaNet layer its recurrence, 7 x value heads x
key head_dim x value head_dim (docs/ALGORITHMS.md §14). Multi-head latent attention's scores run
over nope + rope dims and its values over v_head_dim: 12 x L x H x d_head x T with d_head their
mean (docs/ALGORITHMS.md §15).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAMBA_LAYER_TYPES = ("mamba", "linear_attention")  # Mamba-2 layers (Granite-4, Nemotron-H); "linear_attention" is a gated DeltaNet in Qwen3-Next and Qwen3.5
PARALLEL = "hybrid"  # Falcon-H1: Mamba-2 and attention side by side in one layer
NOT_ATTENDING = ("conv", "mlp", "moe")  # LFM2's short-conv layers, Nemotron-H's MLP and MoE layers


@dataclass(frozen=True)
class ModelShape:
    num_layers: int  # layers with attention
    num_heads: int
    head_dim: float  # MLA: the mean of its query/key and value sizes (the attention term uses their sum)
    nonembedding_params: int
    lm_head_params: int
    ssm_flops: float = 0.0  # forward FLOPs per token of every Mamba-2 scan and DeltaNet recurrence together


def _first(config, *names: str):
    return next((getattr(config, name) for name in names if getattr(config, name, None) is not None), None)


def mamba_scan_flops(config) -> tuple[int, float]:
    """(Mamba-2 layers, their scan's forward FLOPs per token): per head and token the recurrence
    h <- exp(dt A) h + dt x B^T costs 3 x head_dim x state (decay, outer product, add) and the
    read-out y = h C 2 x head_dim x state; the projections and the conv are parameters (6N)."""
    heads = _first(config, "mamba_n_heads", "mamba_num_heads")
    types = getattr(config, "layer_types", None) or []
    if not heads or not types:
        return 0, 0.0
    layers = sum(kind in MAMBA_LAYER_TYPES or kind == PARALLEL for kind in types)
    per_layer = 5.0 * heads * _first(config, "mamba_d_head", "mamba_head_dim") * _first(config, "mamba_d_state", "ssm_state_size")
    return layers, layers * per_layer


def deltanet_flops(config) -> float:
    """Forward FLOPs per token of every gated-DeltaNet recurrence: per value head the state S
    [key head_dim x value head_dim] decays (1 x dk x dv), predicts the value S^T k (2), takes the
    delta rule's rank-one update (2) and is read out by the query S^T q (2): 7 x dk x dv."""
    heads = getattr(config, "linear_num_value_heads", None)
    types = getattr(config, "layer_types", None) or []
    if not heads or not types:
        return 0.0
    layers = sum(kind == "linear_attention" for kind in types)
    return 7.0 * layers * heads * config.linear_key_head_dim * config.linear_value_head_dim


def model_shape(model) -> ModelShape:
    config = model.config
    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    head_params = head.weight.numel() if head is not None else 0
    counted = {id(embed)}
    if head is not None:
        counted.add(id(head.weight))
    experts = getattr(config, "num_local_experts", None) or getattr(config, "num_experts", None) or 0
    active = config.num_experts_per_tok / experts if experts else 1.0

    def active_numel(name: str, p) -> float:  # fused experts [experts, ...] and their biases: k of them run per token
        fused = p.dim() == 3 or (p.dim() == 2 and ".experts." in name and name.endswith("_bias"))  # gpt-oss's biases
        return p.numel() * active if experts and fused and p.shape[0] == experts else p.numel()

    nonembedding = round(sum(active_numel(n, p) for n, p in model.named_parameters() if id(p) not in counted))
    # learned absolute position tables (GPT-2 style) are embeddings too
    for name, param in model.named_parameters():
        if name.endswith(("wpe.weight", "embed_positions.weight")):
            nonembedding -= param.numel()
    ssm = mamba_scan_flops(config)[1] + deltanet_flops(config)
    layers = config.num_hidden_layers
    types = getattr(config, "layer_types", None) or []
    if any(kind in MAMBA_LAYER_TYPES + NOT_ATTENDING or kind == PARALLEL for kind in types):
        # a hybrid: only its attention layers attend (not its Mamba, short-conv or MLP-only layers)
        layers = sum(("attention" in kind and kind not in MAMBA_LAYER_TYPES) or kind == PARALLEL for kind in types)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    if getattr(config, "kv_lora_rank", None):  # MLA: scores over nope + rope dims, values of v_head_dim
        head_dim = (config.qk_nope_head_dim + config.qk_rope_head_dim + config.v_head_dim) / 2
    return ModelShape(layers, heads, head_dim, nonembedding, head_params, ssm)


def training_flops_per_token(shape: ModelShape, seq_len: int) -> float:
    attention = 12.0 * shape.num_layers * shape.num_heads * shape.head_dim * seq_len
    return 6.0 * shape.nonembedding_params + 6.0 * shape.lm_head_params + attention + 3.0 * shape.ssm_flops


def forward_flops_per_token(shape: ModelShape, seq_len: int) -> float:
    return training_flops_per_token(shape, seq_len) / 3.0


def shape_of_folder(model_dir: str | Path, trust_remote_code: bool = False) -> ModelShape:
    """The shape of a saved model without loading its weights (built on the meta device)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return model_shape(model)
