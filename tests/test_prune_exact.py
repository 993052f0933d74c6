"""Exactness of masking and slicing on every family: the masked model with a deterministic mask
and the sliced model give the same logits, with folded soft values and without."""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILY_CONFIGS, FAMILY_TARGETS, make_family_model

from regrow.compress.families import adapter_for
from regrow.compress.masks import MaskHooks, Masks
from regrow.compress.select import grouped_mask, select
from regrow.compress.shape import check_target
from regrow.compress.slicing import KeptUnits, slice_model
from regrow.compress.targets import count_parameters, resolve_target


def meta_parameter_count(config) -> int:
    """Parameters of an HF config counted by HF itself (a model on the meta device)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def random_masks(source, seed: int) -> tuple[Masks, Masks]:
    g = torch.Generator().manual_seed(seed)
    L, H, m, d = source.num_hidden_layers, source.num_attention_heads, source.intermediate_size, source.hidden_size
    scores = Masks(torch.rand(L, generator=g), torch.rand(L, H, generator=g), torch.rand(L, m, generator=g), torch.rand(d, generator=g))
    if source.num_experts:
        scores.expert = torch.rand(L, source.num_experts, generator=g)
        scores.expert_mlp = torch.rand(L, source.num_experts, source.moe_intermediate_size, generator=g)
    if source.shared_expert_intermediate_size:
        scores.shared_mlp = torch.rand(L, source.shared_expert_intermediate_size, generator=g)
    if source.mamba_num_heads:
        scores.mamba_head = torch.rand(L, source.mamba_num_heads, generator=g)
    if "conv" in source.layer_kinds:  # a short conv's channels (LFM2), as many as hidden
        scores.conv = torch.rand(L, d, generator=g)
    if source.linear_num_value_heads:
        scores.linear_head = torch.rand(L, source.linear_num_value_heads, generator=g)
    if source.mamba_num_heads:  # drawn last: the other kinds' scores stay those of earlier versions
        scores.mamba_channel = torch.rand(L, source.mamba_head_dim, generator=g)
    if source.kv_lora_rank:  # latent attention's ranks
        scores.q_latent = torch.rand(L, source.q_lora_rank, generator=g)
        scores.kv_latent = torch.rand(L, source.kv_lora_rank, generator=g)
    kinds = ("layer", "head", "mlp", "hidden", "expert", "expert_mlp", "shared_mlp", "mamba_head", "conv", "linear_head",
             "mamba_channel", "q_latent", "kv_latent")
    values = Masks(**{k: 0.9 + 0.1 * torch.rand(getattr(scores, k).shape, generator=g) for k in kinds
                      if getattr(scores, k) is not None})
    return scores, values


@torch.no_grad()
def masked_logits(model, adapter, masks, ids) -> torch.Tensor:
    """The logits of the source model with the deterministic masks applied through hooks."""
    hooks = MaskHooks(model, adapter)
    hooks.masks, hooks.final = masks, True
    try:
        return model(ids).logits
    finally:
        hooks.remove()


def cut(source, spec: dict, what: str) -> dict:
    """The family's target spec pruning width and depth ("both"), the width only or the depth only."""
    if what == "depth":
        return {"num_hidden_layers": spec["num_hidden_layers"]}
    return {**spec, "num_hidden_layers": source.num_hidden_layers} if what == "width" else spec


@pytest.mark.parametrize("fold,what", [(True, "both"), (False, "both"), (True, "width"), (False, "depth")])
@pytest.mark.parametrize("family", list(FAMILY_CONFIGS))
def test_masked_model_equals_sliced_model(family, fold, what, tmp_path):
    model = make_family_model(family, vocab_size=97).eval()
    adapter = adapter_for(model.config)
    source = adapter.shape(model.config)
    target = source.replace(**adapter.complete_spec(cut(source, FAMILY_TARGETS[family], what), source))
    check_target(source, target)
    adapter.check_target(source, target)
    scores, values = random_masks(source, seed=1)
    masks = select(scores, source, target, values if fold else None)

    ids = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(2))
    masked = masked_logits(model, adapter, masks, ids)
    with torch.no_grad():
        unmasked = model(ids).logits
    pruned = slice_model(model, adapter, masks, target, fold=fold).eval()
    with torch.no_grad():
        sliced = pruned(ids).logits

    scale = masked.abs().max()
    assert (masked - sliced).abs().max() <= 1e-5 * max(1.0, float(scale))
    assert (masked - unmasked).abs().max() > 1e-3  # the mask really changed the model
    dense_kept = not all(adapter.moe_layers(pruned.config))  # removing layers may remove every dense MLP layer
    assert adapter.shape(pruned.config) == (target if dense_kept else target.replace(intermediate_size=0))
    n = sum(p.numel() for p in pruned.parameters())
    kept_layers = KeptUnits(masks, source).layers  # dense and MoE layers differ in size: which are kept matters
    assert n == meta_parameter_count(pruned.config) == count_parameters(model, adapter, target, kept_layers)
    layer_ids = [m.layer_idx for m in pruned.modules() if getattr(m, "layer_idx", None) is not None]
    # renumbered 0..n-1 (the KV cache indexes by it); some families set it on the layer and its attention
    assert layer_ids == sorted(layer_ids) and sorted(set(layer_ids)) == list(range(target.num_hidden_layers))
    if model.config.tie_word_embeddings:
        assert pruned.get_output_embeddings().weight is pruned.get_input_embeddings().weight


def test_grouped_attention_selection_is_legal():
    """Whole kv groups by summed score, then the best heads within each kept group."""
    scores = torch.tensor([[9.0, 0.0, 1.0, 1.0, 5.0, 6.0, 0.0, 0.5]])  # 4 groups of 2 heads
    both = grouped_mask(scores, 4, 2, 2)
    assert both.tolist() == [[1, 1, 0, 0, 1, 1, 0, 0]]  # groups 0 (9.0) and 2 (11.0)
    within = grouped_mask(scores, 4, 4, 1)
    assert within.tolist() == [[1, 0, 1, 0, 0, 1, 0, 1]]  # one head per group, the better one


def test_target_ratio_picks_a_close_homogeneous_shape(family_models):
    from regrow.models.hf import load_model

    for family in ("llama", "gpt_neox", "bloom"):
        model = load_model(family_models[family])
        adapter = adapter_for(model.config)
        source = adapter.shape(model.config)
        total = count_parameters(model, adapter, source)
        target = resolve_target(model, adapter, None, 0.5, depth_only=False)
        adapter.check_target(source, target)
        assert target.num_hidden_layers == source.num_hidden_layers
        assert abs(count_parameters(model, adapter, target) / total - 0.5) < 0.08
        depth = resolve_target(model, adapter, None, 0.5, depth_only=True)
        assert depth.replace(num_hidden_layers=source.num_hidden_layers) == source
        assert depth.num_hidden_layers < source.num_hidden_layers


def test_sliding_window_layers_follow_the_kept_layers():
    """Qwen3 with sliding-window layers (window 8 < 24 tokens): the pruned config's layer_types are
    the kept layers' own, so masked and sliced logits agree, and the export generates with the KV
    cache as without it."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("qwen3", vocab_size=97, hidden_size=64, num_hidden_layers=4, num_attention_heads=8,
                                  num_key_value_heads=4, head_dim=12, intermediate_size=96, max_position_embeddings=64,
                                  use_sliding_window=True, sliding_window=8, max_window_layers=2, initializer_range=0.1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    types = list(model.config.layer_types)
    assert types == ["full_attention"] * 2 + ["sliding_attention"] * 2
    adapter = adapter_for(model.config)
    source = adapter.shape(model.config)
    target = source.replace(num_hidden_layers=2, hidden_size=48, num_attention_heads=4, num_key_value_heads=2)
    scores, _ = random_masks(source, seed=3)
    scores.layer = torch.tensor([0.9, 0.1, 0.2, 0.8])  # keep layers 0 (full) and 3 (sliding)
    masks = select(scores, source, target, None)
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(4))
    masked = masked_logits(model, adapter, masks, ids)
    pruned = slice_model(model, adapter, masks, target).eval()
    assert pruned.config.layer_types == [types[0], types[3]]
    with torch.no_grad():
        assert (pruned(ids).logits - masked).abs().max() <= 1e-5 * max(1.0, float(masked.abs().max()))
    cached = pruned.generate(ids[:1, :4], max_new_tokens=20, min_new_tokens=20, do_sample=False, use_cache=True)
    uncached = pruned.generate(ids[:1, :4], max_new_tokens=20, min_new_tokens=20, do_sample=False, use_cache=False)
    assert cached.shape[1] == 24 and torch.equal(cached, uncached)
