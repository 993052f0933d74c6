"""Shared fixtures: small real corpora (stdlib docstrings and code), a tokenizer, a data folder.

Everything is made by the tests themselves, once per session, in a temporary folder.
"""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest

from regrow.cli.main import main

MODULES = (
    "json/__init__.py", "json/decoder.py", "json/encoder.py", "textwrap.py", "argparse.py", "csv.py",
    "pathlib.py", "shutil.py", "tempfile.py", "string.py", "difflib.py", "fractions.py", "statistics.py",
    "heapq.py", "bisect.py", "calendar.py", "configparser.py", "dataclasses.py", "functools.py", "glob.py",
)


def stdlib_texts() -> tuple[list[str], list[str]]:
    """(docstrings, code) from a fixed list of standard-library modules."""
    root = Path(sysconfig.get_paths()["stdlib"])
    prose, code = [], []
    for rel in MODULES:
        source = (root / rel).read_text()
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    prose.append(doc)
        code.append(source)
    return prose, code


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Two folders of text files: prose (one docstring per file) and code (one module per file)."""
    root = tmp_path_factory.mktemp("corpus")
    prose, code = stdlib_texts()
    for name, docs in (("prose", prose), ("code", code)):
        folder = root / name
        folder.mkdir()
        for i, doc in enumerate(docs):
            (folder / f"{i:04d}.txt").write_text(doc)
    return {"prose": root / "prose", "code": root / "code", "root": root}


@pytest.fixture(scope="session")
def tokenizer_dir(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    assert main(["tokenizer", "train", str(corpus["prose"]), str(corpus["code"]), "--vocab-size", "512", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def data_dir(corpus, tokenizer_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "data"
    for domain in ("prose", "code"):
        args = ["data", "prepare", str(corpus[domain]), "--domain", domain, "--tokenizer", str(tokenizer_dir),
                "--out", str(out), "--val-fraction", "0.1", "--no-progress"]
        assert main(args) == 0
    return out


def paragraphs(text: str) -> list[str]:
    """Blank-line paragraphs, written here independently of regrow's reader."""
    out, current = [], []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.strip():
            current.append(line)
        elif current:
            out.append("\n".join(current).strip())
            current = []
    if current:
        out.append("\n".join(current).strip())
    return [p for p in out if p]


TINY_LLAMA = {
    "model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
}


def recipe(tokenizer_dir: Path, data_dir: Path, out_dir: Path, **overrides) -> dict:
    """A tiny but complete training recipe; keyword overrides replace top-level sections."""
    base = {
        "out_dir": str(out_dir),
        "seed": 0,
        "tokenizer": str(tokenizer_dir),
        "model": {"config": dict(TINY_LLAMA)},
        "data": {"path": str(data_dir), "mixture": {"prose": 0.5, "code": 0.5}, "seq_len": 32},
        "train": {"steps": 6, "batch_size": 4, "log_every": 1, "eval_tokens": 512, "progress": False},
        "schedule": {"name": "cosine", "lr_max": 3e-3, "lr_min": 3e-4, "warmup_steps": 2},
    }
    base.update(overrides)
    return base


# Tiny random models of every family regrow prunes (vocabulary of the session tokenizer).
FAMILY_CONFIGS = {
    "llama": {"model_type": "llama", "num_key_value_heads": 4, "intermediate_size": 96},
    "mistral": {"model_type": "mistral", "num_key_value_heads": 2, "intermediate_size": 96, "sliding_window": None},
    "qwen2": {"model_type": "qwen2", "num_key_value_heads": 2, "intermediate_size": 96, "tie_word_embeddings": True},
    "olmo2": {"model_type": "olmo2", "num_key_value_heads": 4, "intermediate_size": 96},
    "qwen3": {"model_type": "qwen3", "num_key_value_heads": 4, "intermediate_size": 96, "head_dim": 12,
              "tie_word_embeddings": True},
    # full and sliding-window layers (window 8 < the tests' 16-32 tokens): layer_types follow the kept layers
    "qwen3-sliding": {"model_type": "qwen3", "num_key_value_heads": 4, "intermediate_size": 96,
                      "use_sliding_window": True, "sliding_window": 8, "max_window_layers": 2},
    "gemma2": {"model_type": "gemma2", "num_key_value_heads": 4, "intermediate_size": 96, "head_dim": 16,
               "sliding_window": 8, "query_pre_attn_scalar": 12, "tie_word_embeddings": False},
    "gemma3": {"model_type": "gemma3_text", "num_key_value_heads": 4, "intermediate_size": 96, "head_dim": 16,
               "sliding_window": 8, "layer_types": ["sliding_attention", "full_attention"] * 2,
               "attn_logit_softcapping": 20.0, "final_logit_softcapping": 10.0},
    "phi3": {"model_type": "phi3", "num_key_value_heads": 4, "intermediate_size": 96, "partial_rotary_factor": 0.5,
             "pad_token_id": None, "eos_token_id": None, "bos_token_id": None},
    "smollm3": {"model_type": "smollm3", "num_key_value_heads": 4, "intermediate_size": 96, "no_rope_layer_interval": 2,
                "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    "granite": {"model_type": "granite", "num_key_value_heads": 2, "intermediate_size": 96, "embedding_multiplier": 3.0,
                "residual_multiplier": 0.5, "attention_multiplier": 0.2, "logits_scaling": 4.0},
    "olmo3": {"model_type": "olmo3", "num_key_value_heads": 4, "intermediate_size": 96, "sliding_window": 8,
              "layer_types": ["sliding_attention", "sliding_attention", "full_attention", "full_attention"],
              "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    # Llama-3 RoPE scaling and Mistral's sliding window on the llama-like adapter
    "llama3-rope": {"model_type": "llama", "num_key_value_heads": 2, "intermediate_size": 96,
                    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 32}},
    "mistral-sliding": {"model_type": "mistral", "num_key_value_heads": 2, "intermediate_size": 96, "sliding_window": 8},
    "qwen2-yarn": {"model_type": "qwen2", "num_key_value_heads": 2, "intermediate_size": 96,
                   "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                       "original_max_position_embeddings": 32}},
    "olmo": {"model_type": "olmo", "num_key_value_heads": 4, "intermediate_size": 96, "clip_qkv": 0.3},
    "gpt_neox": {"model_type": "gpt_neox", "intermediate_size": 96, "rotary_pct": 0.25, "use_parallel_residual": True},
    "bloom": {"model_type": "bloom", "n_layer": 4, "n_head": 8},
    # mixtures of experts (fused experts of transformers 5); Qwen-MoE with dense MLP layers in between
    "mixtral": {"model_type": "mixtral", "num_key_value_heads": 2, "intermediate_size": 32, "num_local_experts": 8,
                "num_experts_per_tok": 2},
    # gpt-oss: attention sinks, alternating sliding/full layers, transposed experts with interleaved
    # gate/up columns, biases and a clamped SwiGLU; top-k logits softmaxed
    "gpt_oss": {"model_type": "gpt_oss", "num_key_value_heads": 4, "head_dim": 8, "intermediate_size": 32,
                "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": 8, "swiglu_limit": 1.5},
    "olmoe": {"model_type": "olmoe", "num_key_value_heads": 4, "intermediate_size": 32, "num_experts": 8,
              "num_experts_per_tok": 2, "norm_topk_prob": False},
    "qwen3_moe": {"model_type": "qwen3_moe", "num_key_value_heads": 4, "head_dim": 12, "intermediate_size": 96,
                  "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 3, "norm_topk_prob": True,
                  "mlp_only_layers": [1], "tie_word_embeddings": True},
    "qwen2_moe": {"model_type": "qwen2_moe", "num_key_value_heads": 2, "intermediate_size": 96, "moe_intermediate_size": 24,
                  "shared_expert_intermediate_size": 48, "num_experts": 6, "num_experts_per_tok": 2,
                  "decoder_sparse_step": 2},
    # GLM-4.5: a dense first layer, then DeepSeek-V3's experts (group-limited sigmoid routing,
    # score-correction bias) with two shared experts; q/k biases and per-head q/k norms
    "glm4_moe": {"model_type": "glm4_moe", "num_key_value_heads": 4, "head_dim": 8, "intermediate_size": 96,
                 "moe_intermediate_size": 16, "n_routed_experts": 8, "n_group": 2, "topk_group": 1,
                 "num_experts_per_tok": 2, "n_shared_experts": 2, "first_k_dense_replace": 1, "use_qk_norm": True,
                 "attention_bias": True, "routed_scaling_factor": 2.0, "tie_word_embeddings": False},
    # DeepSeek-V3: multi-head latent attention (query and key/value latents, a shared rope key) and
    # DeepSeek's experts; DeepSeek-V2 without a query latent, softmax group-limited greedy routing
    "deepseek_v3": {"model_type": "deepseek_v3", "num_key_value_heads": 8, "q_lora_rank": 24, "kv_lora_rank": 16,
                    "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 6, "intermediate_size": 96,
                    "moe_intermediate_size": 16, "n_routed_experts": 8, "n_group": 2, "topk_group": 1,
                    "num_experts_per_tok": 2, "n_shared_experts": 1, "first_k_dense_replace": 1,
                    "routed_scaling_factor": 2.5, "norm_topk_prob": True},
    "deepseek_v2": {"model_type": "deepseek_v2", "num_key_value_heads": 8, "q_lora_rank": None, "kv_lora_rank": 16,
                    "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "intermediate_size": 96,
                    "moe_intermediate_size": 16, "n_routed_experts": 8, "n_group": 4, "topk_group": 2,
                    "topk_method": "group_limited_greedy", "num_experts_per_tok": 2, "n_shared_experts": 2,
                    "first_k_dense_replace": 1, "routed_scaling_factor": 1.5},
    # hybrids: Mamba-2 and attention layers (Granite-4), with experts + a shared MLP, or the shared MLP alone
    "granitemoehybrid": {"model_type": "granitemoehybrid", "num_key_value_heads": 4, "intermediate_size": 32,
                         "shared_intermediate_size": 48, "num_local_experts": 4, "num_experts_per_tok": 2,
                         "layer_types": ["mamba", "attention", "mamba", "mamba"], "mamba_n_heads": 8, "mamba_d_head": 16,
                         "mamba_n_groups": 2, "mamba_d_state": 8, "mamba_expand": 2, "mamba_proj_bias": True,
                         "position_embedding_type": "rope", "embedding_multiplier": 3.0, "residual_multiplier": 0.5,
                         "attention_multiplier": 0.2, "logits_scaling": 4.0, "mamba_chunk_size": 8},
    "granite4-dense": {"model_type": "granitemoehybrid", "num_key_value_heads": 2, "num_local_experts": 0,
                       "shared_intermediate_size": 96, "layer_types": ["attention", "mamba", "mamba", "attention"],
                       "mamba_n_heads": 4, "mamba_d_head": 32, "mamba_n_groups": 1, "mamba_d_state": 16,
                       "mamba_expand": 2, "position_embedding_type": "rope", "mamba_chunk_size": 8},
    # Nemotron-H: one mixer per layer (Mamba-2, attention or a relu^2 MLP)
    "nemotron_h": {"model_type": "nemotron_h", "num_key_value_heads": 4, "head_dim": 8, "intermediate_size": 96,
                   "layers_block_type": ["mamba", "attention", "mlp", "mamba"], "mamba_num_heads": 8,
                   "mamba_head_dim": 12, "n_groups": 2, "ssm_state_size": 8, "chunk_size": 8, "use_bias": True,
                   "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    # Nemotron-H MoE: non-gated experts in 4 groups of 3 (group-limited sigmoid routing with a
    # score-correction bias), a shared expert; with the experts in a latent space, and without
    "nemotron_h-moe": {"model_type": "nemotron_h", "num_key_value_heads": 2, "head_dim": 8,
                       "layers_block_type": ["mamba", "moe", "attention", "moe"], "mamba_num_heads": 4,
                       "mamba_head_dim": 16, "n_groups": 1, "ssm_state_size": 8, "chunk_size": 8,
                       "n_routed_experts": 12, "num_experts_per_tok": 3, "n_group": 4, "topk_group": 2,
                       "moe_intermediate_size": 24, "moe_shared_expert_intermediate_size": 32, "moe_latent_size": 32,
                       "routed_scaling_factor": 2.5, "norm_topk_prob": True,
                       "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    "nemotron_h-nolatent": {"model_type": "nemotron_h", "num_key_value_heads": 4, "head_dim": 8, "intermediate_size": 48,
                            "layers_block_type": ["attention", "moe", "mlp", "moe"], "mamba_num_heads": 4,
                            "mamba_head_dim": 8, "n_groups": 1, "ssm_state_size": 8, "chunk_size": 8,
                            "n_routed_experts": 8, "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1,
                            "moe_intermediate_size": 16, "moe_shared_expert_intermediate_size": 24,
                            "routed_scaling_factor": 1.0, "norm_topk_prob": False,
                            "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    # Falcon-H1: Mamba-2 and attention in parallel in every layer, muP multipliers; with the gated
    # norm normalising before the gate, and without the norm
    "falcon_h1": {"model_type": "falcon_h1", "num_key_value_heads": 4, "intermediate_size": 96, "mamba_n_heads": 8,
                  "mamba_d_head": 12, "mamba_d_ssm": 96, "mamba_n_groups": 2, "mamba_d_state": 8, "mamba_chunk_size": 8,
                  "mamba_rms_norm": True, "mamba_norm_before_gate": True, "mamba_proj_bias": True,
                  "projectors_bias": True, "embedding_multiplier": 2.0, "lm_head_multiplier": 0.5,
                  "mlp_multipliers": [1.5, 0.5], "ssm_multipliers": [1.2, 0.8, 1.1, 0.9, 1.3], "key_multiplier": 0.7,
                  "attention_in_multiplier": 1.1, "attention_out_multiplier": 0.9, "ssm_in_multiplier": 1.2,
                  "ssm_out_multiplier": 0.8, "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    "falcon_h1-nonorm": {"model_type": "falcon_h1", "num_key_value_heads": 2, "intermediate_size": 96,
                         "mamba_n_heads": 4, "mamba_d_head": 16, "mamba_d_ssm": 64, "mamba_n_groups": 1,
                         "mamba_d_state": 8, "mamba_chunk_size": 8, "mamba_rms_norm": False,
                         "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    # LFM2: short-convolution and attention layers, per-head q/k norms, the MLP width derived
    "lfm2": {"model_type": "lfm2", "num_key_value_heads": 4, "intermediate_size": 144, "block_multiple_of": 16,
             "layer_types": ["conv", "full_attention", "conv", "conv"], "conv_bias": True, "tie_word_embeddings": True,
             "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    # LFM2-MoE: LFM2's layers, a dense first layer, then experts with a sigmoid router and a selection bias
    "lfm2_moe": {"model_type": "lfm2_moe", "num_key_value_heads": 4, "intermediate_size": 96,
                 "moe_intermediate_size": 24, "num_experts": 6, "num_experts_per_tok": 2, "num_dense_layers": 1,
                 "routed_scaling_factor": 1.5, "layer_types": ["conv", "conv", "full_attention", "conv"],
                 "conv_bias": True, "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    # Qwen3-Next: gated DeltaNet (fused per-key-head projections) and gated attention, experts with a
    # shared expert and a dense MLP layer
    "qwen3_next": {"model_type": "qwen3_next", "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 96,
                   "moe_intermediate_size": 24, "shared_expert_intermediate_size": 32, "num_experts": 6,
                   "num_experts_per_tok": 2, "norm_topk_prob": True, "mlp_only_layers": [2],
                   "layer_types": ["linear_attention", "full_attention", "linear_attention", "linear_attention"],
                   "linear_num_key_heads": 2, "linear_num_value_heads": 6, "linear_key_head_dim": 8,
                   "linear_value_head_dim": 12, "linear_conv_kernel_dim": 4, "partial_rotary_factor": 0.5,
                   "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    # OLMo-hybrid: gated-DeltaNet (pre-norm) and OLMo-2 attention (post-norm) layers
    "olmo_hybrid": {"model_type": "olmo_hybrid", "num_key_value_heads": 4, "intermediate_size": 96,
                    "layer_types": ["linear_attention", "linear_attention", "full_attention", "linear_attention"],
                    "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 8,
                    "linear_value_head_dim": 12, "linear_conv_kernel_dim": 4, "linear_allow_neg_eigval": True,
                    "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    # Qwen3.5: the DeltaNet's projections unfused; dense MLPs, or experts with a shared expert in every layer
    "qwen3_5": {"model_type": "qwen3_5_text", "num_key_value_heads": 4, "head_dim": 8, "intermediate_size": 96,
                "layer_types": ["linear_attention", "linear_attention", "full_attention", "linear_attention"],
                "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 12,
                "linear_value_head_dim": 8, "linear_conv_kernel_dim": 4, "tie_word_embeddings": True,
                "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
    "qwen3_5_moe": {"model_type": "qwen3_5_moe_text", "num_key_value_heads": 2, "head_dim": 8,
                    "moe_intermediate_size": 24, "shared_expert_intermediate_size": 32, "num_experts": 6,
                    "num_experts_per_tok": 2, "layer_types": ["full_attention", "linear_attention"] * 2,
                    "linear_num_key_heads": 4, "linear_num_value_heads": 4, "linear_key_head_dim": 8,
                    "linear_value_head_dim": 8, "linear_conv_kernel_dim": 3,
                    "pad_token_id": None, "bos_token_id": None, "eos_token_id": None},
}
# A target per family that prunes every kind of unit (and keeps each family's rules).
FAMILY_TARGETS = {
    "llama": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64},
    "mistral": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 1, "intermediate_size": 64},
    "qwen2": {"num_hidden_layers": 3, "hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48},
    "olmo2": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 6, "num_key_value_heads": 3, "intermediate_size": 64},
    "qwen3": {"num_hidden_layers": 3, "hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48},
    "qwen3-sliding": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64},
    "gemma2": {"num_hidden_layers": 3, "hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48},
    "gemma3": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 6, "num_key_value_heads": 3, "intermediate_size": 64},
    "phi3": {"num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48},
    "smollm3": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64},
    "granite": {"num_hidden_layers": 3, "hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 1, "intermediate_size": 48},
    "olmo3": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 6, "num_key_value_heads": 3, "intermediate_size": 64},
    "llama3-rope": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 1, "intermediate_size": 64},
    "mistral-sliding": {"num_hidden_layers": 3, "hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 1, "intermediate_size": 48},
    "qwen2-yarn": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64},
    "olmo": {"num_hidden_layers": 3, "hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64},
    "gpt_neox": {"num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 48},
    "bloom": {"num_hidden_layers": 3, "num_attention_heads": 4},
    "mixtral": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 1,
                "num_experts": 5, "num_experts_per_tok": 2, "moe_intermediate_size": 24},
    "gpt_oss": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
                "num_experts": 5, "num_experts_per_tok": 2, "moe_intermediate_size": 24},
    "olmoe": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 6, "num_key_value_heads": 3,
              "num_experts": 4, "num_experts_per_tok": 1, "moe_intermediate_size": 24},
    "qwen3_moe": {"num_hidden_layers": 3, "hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "intermediate_size": 48, "num_experts": 5, "num_experts_per_tok": 2, "moe_intermediate_size": 24},
    "qwen2_moe": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 1,
                  "intermediate_size": 64, "num_experts": 4, "num_experts_per_tok": 1, "moe_intermediate_size": 16,
                  "shared_expert_intermediate_size": 32},
    "glm4_moe": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
                 "intermediate_size": 64, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 8,
                 "shared_expert_intermediate_size": 16},
    "deepseek_v3": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "intermediate_size": 64,
                    "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 8,
                    "shared_expert_intermediate_size": 8, "q_lora_rank": 16, "kv_lora_rank": 8},
    "deepseek_v2": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "intermediate_size": 64,
                    "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 8,
                    "shared_expert_intermediate_size": 16, "kv_lora_rank": 8},
    "granitemoehybrid": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
                         "num_experts": 3, "num_experts_per_tok": 2, "moe_intermediate_size": 24,
                         "shared_expert_intermediate_size": 32, "mamba_num_heads": 6, "mamba_head_dim": 8},
    "granite4-dense": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 1,
                       "shared_expert_intermediate_size": 64, "mamba_num_heads": 3, "mamba_head_dim": 16},
    "nemotron_h": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
                   "intermediate_size": 64, "mamba_num_heads": 4, "mamba_head_dim": 8},
    "nemotron_h-moe": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 1,
                       "num_experts": 6, "num_experts_per_tok": 2, "topk_group": 1, "n_group": 3,
                       "moe_intermediate_size": 16, "shared_expert_intermediate_size": 24, "mamba_num_heads": 2,
                       "mamba_head_dim": 8},
    "nemotron_h-nolatent": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4,
                            "num_key_value_heads": 2, "intermediate_size": 32, "num_experts": 6, "num_experts_per_tok": 2,
                            "moe_intermediate_size": 8, "shared_expert_intermediate_size": 16},
    "falcon_h1": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "intermediate_size": 64, "mamba_num_heads": 3, "mamba_groups": 1,  # a whole Mamba group goes
                  "mamba_head_dim": 8},
    "falcon_h1-nonorm": {"num_hidden_layers": 3, "hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 1,
                         "intermediate_size": 48, "mamba_num_heads": 3},
    "lfm2": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 64},
    "lfm2_moe": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
                 "intermediate_size": 64, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16},
    "qwen3_next": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 1,
                   "intermediate_size": 64, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                   "shared_expert_intermediate_size": 24, "linear_num_key_heads": 1, "linear_num_value_heads": 2},
    "olmo_hybrid": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "intermediate_size": 64, "linear_num_key_heads": 1, "linear_num_value_heads": 1},
    "qwen3_5": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
                "intermediate_size": 64, "linear_num_key_heads": 2, "linear_num_value_heads": 2},
    "qwen3_5_moe": {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 1,
                    "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                    "shared_expert_intermediate_size": 24, "linear_num_key_heads": 3, "linear_num_value_heads": 3},
}
MOE_FAMILIES = ("mixtral", "gpt_oss", "olmoe", "qwen3_moe", "qwen2_moe", "granitemoehybrid", "qwen3_next",
                "qwen3_5_moe", "lfm2_moe", "nemotron_h-moe", "nemotron_h-nolatent", "glm4_moe", "deepseek_v3",
                "deepseek_v2")
HYBRID_FAMILIES = ("granitemoehybrid", "granite4-dense", "nemotron_h", "falcon_h1", "falcon_h1-nonorm", "lfm2", "qwen3_next",
                   "qwen3_5", "qwen3_5_moe", "lfm2_moe", "olmo_hybrid", "nemotron_h-moe", "nemotron_h-nolatent")


def depth_target(family: str) -> dict:
    """Half the layers, but a layer of each kind a hybrid has (Nemotron-H's tiny model: three kinds)."""
    return {"num_hidden_layers": 3 if family.startswith("nemotron_h") else 2}


def make_family_model(family: str, vocab_size: int, seed: int = 0):
    """A randomly initialised tiny model of `family` with non-trivial norm weights and biases."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(FAMILY_CONFIGS[family])
    model_type = fields.pop("model_type")
    base = {"vocab_size": vocab_size, "hidden_size": 64, "initializer_range": 0.1}
    if model_type != "bloom":
        base.update(num_hidden_layers=4, num_attention_heads=8, max_position_embeddings=128)
    config = AutoConfig.for_model(model_type, **{**base, **fields})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1:  # norms start at 1 / 0: perturb them so masked norms are really tested
                param.add_(torch.randn_like(param) * 0.2)
            elif param.dim() == 2 and param.abs().max() == 0:  # routers (and gates) HF starts at zero: route for real
                param.normal_(0.0, 1.0)
        for name, buffer in model.named_buffers():
            if name.endswith(("expert_bias", "e_score_correction_bias")):  # a router's selection bias (LFM2-MoE) starts at zero: make it choose
                buffer.normal_(0.0, 0.5)
    return model


@pytest.fixture(scope="session")
def family_models(tokenizer_dir, tmp_path_factory) -> dict[str, Path]:
    """One HF folder (weights + the session tokenizer) per family."""
    from regrow.data.tokenizer import load_tokenizer, vocab_size_of

    tokenizer = load_tokenizer(tokenizer_dir)
    root = tmp_path_factory.mktemp("families")
    folders = {}
    for family in FAMILY_CONFIGS:
        model = make_family_model(family, vocab_size_of(tokenizer))
        folder = root / family
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[family] = folder
    return folders
