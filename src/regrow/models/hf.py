"""Hugging Face causal LMs: load from a local folder or build from config fields; save plainly.

regrow never wraps or re-implements the model: training, pruning and evaluation work on the
`AutoModelForCausalLM` instance itself, so every output is a folder that vanilla
`transformers` loads. Remote code runs only when the user sets `trust_remote_code`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from regrow.atomic import atomic_dir
from regrow.errors import RegrowError, reason_of
from regrow.models.lazy import LazyCheckpoint
from regrow.models.sparsity import MASK_FILE, write_mask_file
from regrow.pause_points import pause_point

SAFETENSORS_GLOBS = ("model.safetensors", "model-*.safetensors")


def quiet_transformers() -> None:
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def is_model_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "config.json").is_file() and any(any(path.glob(g)) for g in SAFETENSORS_GLOBS)


def load_model(path: str | Path, trust_remote_code: bool = False, dtype: torch.dtype = torch.float32):
    """Load weights from a local HF folder (safetensors only); HF picks SDPA attention where the
    family supports it (Bloom falls back to eager)."""
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    path = Path(path)
    if not path.is_dir():
        raise RegrowError(f"model {str(path)!r} is not a folder")
    if not is_model_dir(path):
        raise RegrowError(f"model folder {str(path)!r} needs config.json and *.safetensors weights")
    checkpoint = LazyCheckpoint(path)  # every shard's header read: missing, truncated, corrupt files are named
    try:
        stacked = _load_stacked_experts(path, checkpoint, trust_remote_code, dtype)
        if stacked is not None:
            return stacked
        model, info = AutoModelForCausalLM.from_pretrained(
            str(path),
            trust_remote_code=trust_remote_code,
            dtype=dtype,
            use_safetensors=True,
            output_loading_info=True,
        )
    except Exception as err:  # noqa: BLE001  (a damaged folder fails in many ways; each is about the folder)
        mismatch = _shape_mismatch(path, checkpoint, trust_remote_code)
        if mismatch:
            raise RegrowError(f"config.json of {str(path)!r} does not match its weights: {mismatch}") from err
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise RegrowError(f"model {str(path)!r} could not be loaded: {first}") from err
    check_loading_info(path, info)
    return model


def check_loading_info(path: Path, info: dict) -> None:
    """A weight the config needs but the folder lacks would be left at its random init, and a
    tensor the model does not know would be dropped: both are errors naming the tensors
    (transformers leaves out the tied and derived weights it fills itself)."""
    problems = []
    for key, what in (("missing_keys", "missing"), ("unexpected_keys", "not in the model"),
                      ("mismatched_keys", "of another shape")):
        names = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get(key) or ())
        if names:
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            problems.append(f"{len(names)} {what} ({', '.join(names[:3])}{more})")
    if problems:
        raise RegrowError(f"the weights in {str(path)!r} do not match its config.json: " + "; ".join(problems)
                          + " (a tensor missing would be left random)")


def _load_stacked_experts(path: Path, checkpoint: LazyCheckpoint, trust_remote_code: bool, dtype: torch.dtype):
    """A mixture of experts stored one tensor per expert (the hub's layout, what save_pretrained
    writes), or None for any other checkpoint. transformers stacks such experts into its fused
    tensors while every file stays mapped, which peaks at about twice the model; here the model is
    built with uninitialised weights and each tensor is read, stacked and copied in one at a time
    (peak: the model plus one fused tensor). The result equals from_pretrained's."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
    from transformers.initialization import no_init_weights

    config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    checkpoint.bind(meta)
    if not checkpoint.merged:
        return None
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code, dtype=dtype)
    state = model.state_dict()
    tied = {f"{name}.weight" for name, module in model.named_modules()
            if module is model.get_output_embeddings() and model.config.tie_word_embeddings}
    missing = [n for n in dict(model.named_parameters()) if n not in checkpoint.shapes and n not in tied]
    unexpected = [n for n in checkpoint.names if n not in state]
    check_loading_info(path, {"missing_keys": missing, "unexpected_keys": unexpected})
    with torch.no_grad():
        for name in checkpoint.names:
            if name in state:
                state[name].copy_(checkpoint.read([name])[name])
    model.tie_weights()
    if (path / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(path))
    return model.eval()


def _shape_mismatch(path: Path, checkpoint: LazyCheckpoint, trust_remote_code: bool) -> str | None:
    """The first tensor whose stored shape differs from what config.json builds (None: no such tensor)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        checkpoint.bind(model)
    except Exception:  # noqa: BLE001  (the config itself is the problem: the caller reports the load error)
        return None
    for name, tensor in model.state_dict().items():
        stored = checkpoint.shapes.get(name)
        if stored is not None and list(tensor.shape) != stored:
            return f"{name} is {stored} in the weights but {list(tensor.shape)} by the config"
    return None


def build_model(fields: dict[str, Any], seed: int, trust_remote_code: bool = False):
    """A freshly initialised model from config fields, e.g. {model_type: llama, hidden_size: 256}."""
    from transformers import AutoConfig, AutoModelForCausalLM

    quiet_transformers()
    fields = dict(fields)
    model_type = fields.pop("model_type", None)
    if not model_type:
        raise RegrowError("model.config needs a model_type (e.g. llama, mistral, qwen2, gpt_neox, bloom, olmo2)")
    try:
        config = AutoConfig.for_model(model_type, **fields)
    except (ValueError, TypeError) as err:
        raise RegrowError(f"model.config is not a valid {model_type!r} config: {reason_of(err)}") from err
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def max_positions(config) -> int | None:
    """Longest sequence the model's position scheme allows (None: no limit, e.g. ALiBi)."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_compatible(model, vocab_size: int, seq_len: int, seq_len_name: str = "data.seq_len") -> None:
    """The tokenizer must fit the embedding table and the sequences the position scheme."""
    model_vocab = model.get_input_embeddings().weight.shape[0]
    if vocab_size > model_vocab:
        raise RegrowError(
            f"the tokenizer has {vocab_size} tokens but the model's vocabulary holds {model_vocab}; "
            "use the model's own tokenizer or a model with vocab_size >= the tokenizer's"
        )
    limit = max_positions(model.config)
    if limit is not None and seq_len > limit:
        raise RegrowError(f"{seq_len_name} {seq_len} exceeds the model's {limit} positions; allowed: <= {limit}")


def write_model_files(model, tokenizer, folder: Path, state_dict: dict | None = None) -> None:
    """Write an HF folder's files (safetensors + config + tokenizer) into an existing folder.

    `state_dict` gives the weights of a sharded model, gathered by the caller."""
    quiet_transformers()
    model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def save_model(
    model, tokenizer, out_dir: str | Path, extra_json: dict[str, Any] | None = None, state_dict: dict | None = None,
    sparsity_masks: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save an HF folder (plus `extra_json` files and the sparsity mask a sparse model holds) atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        write_model_files(model, tokenizer, tmp, state_dict)
        for name, data in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(data, indent=2) + "\n")
        if sparsity_masks:
            write_mask_file(tmp / MASK_FILE, sparsity_masks, model)
        pause_point("model-export")
    return out_dir


def shape_signature(config) -> dict[str, Any]:
    """The fields that decide the parameter shapes (what resume must not change)."""
    keys = (
        "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "intermediate_size", "head_dim", "n_head", "n_layer", "tie_word_embeddings",
    )
    return {k: getattr(config, k) for k in keys if getattr(config, k, None) is not None}


def fresh_like(model, seed: int):
    """A newly initialised model of the same config (HF's own init), on the same device and dtype."""
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    torch.manual_seed(seed)
    fresh = AutoModelForCausalLM.from_config(model.config)
    param = next(model.parameters())
    return fresh.to(device=param.device, dtype=param.dtype)
