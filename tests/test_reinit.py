"""Re-initialisation options after pruning (docs/ALGORITHMS.md §5)."""

from __future__ import annotations

import copy

import torch
from conftest import make_family_model

from regrow.compress.families import adapter_for
from regrow.compress.reinit import REINITS, newton_schulz
from regrow.models.hf import fresh_like


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_none_keeps_weights():
    model = make_family_model("llama", 97)
    before = params(model)
    after = params(REINITS["none"](model, adapter_for(model.config), 0, 0.8, 0.01))
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_shrink_perturb_is_lambda_theta_plus_sigma_fresh_init():
    model = make_family_model("qwen2", 97)
    before = params(model)
    fresh = params(fresh_like(model, 7))
    after = params(REINITS["shrink-perturb"](model, adapter_for(model.config), 7, 0.8, 0.01))
    for name in before:
        torch.testing.assert_close(after[name], 0.8 * before[name] + 0.01 * fresh[name])
    assert not torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])


def test_random_is_a_fresh_init_of_the_same_shape():
    model = make_family_model("olmo2", 97)
    before = params(model)
    fresh = params(fresh_like(copy.deepcopy(model), 3))
    after = params(REINITS["random"](model, adapter_for(model.config), 3, 0.8, 0.01))
    assert all(torch.equal(after[k], fresh[k]) for k in before)
    assert not torch.equal(after["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"])


def test_newton_schulz_orthogonalises():
    w = torch.randn(16, 48, generator=torch.Generator().manual_seed(0))
    x = newton_schulz(w, steps=40) / (16 / 48) ** 0.5
    torch.testing.assert_close(x @ x.T, torch.eye(16), atol=1e-3, rtol=0)
    x5 = newton_schulz(w) / (16 / 48) ** 0.5  # the 5 FIRE steps: singular values pulled towards 1
    s_before, s_after = torch.linalg.svdvals(w / w.norm()), torch.linalg.svdvals(x5)
    assert s_after.max() / s_after.min() < s_before.max() / s_before.min()


def test_fire_orthogonalises_q_k_v_separately_and_keeps_embeddings():
    model = make_family_model("gpt_neox", 97)
    before = params(model)
    after = params(REINITS["fire"](model, adapter_for(model.config), 0, 0.8, 0.01))
    hd = 8
    fused = "gpt_neox.layers.1.attention.query_key_value.weight"
    for p in range(3):  # rows are [head, q|k|v, head_dim]
        part_before = before[fused].view(8, 3, hd, 64)[:, p].reshape(-1, 64)
        part_after = after[fused].view(8, 3, hd, 64)[:, p].reshape(-1, 64)
        torch.testing.assert_close(part_after, newton_schulz(part_before))
    dense = "gpt_neox.layers.0.mlp.dense_h_to_4h.weight"
    torch.testing.assert_close(after[dense], newton_schulz(before[dense]))
    for name in ("gpt_neox.embed_in.weight", "lm_head.weight", "gpt_neox.layers.0.input_layernorm.weight",
                 "gpt_neox.layers.0.mlp.dense_h_to_4h.bias"):
        assert torch.equal(after[name], before[name])


def test_fire_orthogonalises_non_gated_experts_and_latent_projections():
    """Nemotron-H MoE: each expert's up and down matrix on its own (no gate half to split), the
    latent projections and the shared expert; the router's selection bias is kept."""
    model = make_family_model("nemotron_h-moe", 97)
    before = params(model)
    bias = model.model.layers[1].mixer.gate.e_score_correction_bias.clone()
    after = params(REINITS["fire"](model, adapter_for(model.config), 0, 0.8, 0.01))
    prefix = "model.layers.1.mixer."
    for fused in ("experts.up_proj", "experts.down_proj"):
        for e in (0, 7):
            torch.testing.assert_close(after[prefix + fused][e], newton_schulz(before[prefix + fused][e]))
    for name in ("fc1_latent_proj.weight", "fc2_latent_proj.weight", "shared_experts.up_proj.weight"):
        torch.testing.assert_close(after[prefix + name], newton_schulz(before[prefix + name]))
    assert torch.equal(model.model.layers[1].mixer.gate.e_score_correction_bias, bias) and bias.abs().sum() > 0
