"""The big open mixtures of experts (issue 30): DeepSeek-V3 and V2 with multi-head latent attention
(heads whole, the latent ranks as units of their own), GLM-4-MoE; DeepSeek's expert layout
(dense first layers, shared experts); gpt-oss (attention sinks, transposed experts with
interleaved gate/up columns, biases and a clamped SwiGLU). Every structured method's exactness, streaming and the
routing among kept experts run in the every-family tests (test_prune_exact, test_prune_cli,
test_streaming_prune, test_moe); here: exports loaded without regrow, the latent scores against
a formula over plain transformers' activations, MLA's FLOPs, bad targets, training with an exact
resume."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import FAMILY_TARGETS, make_family_model, recipe
from safetensors.torch import load_file
from test_hybrid import inputs_and_scores, load_without_regrow, prune
from transformers import AutoModelForCausalLM

from regrow.cli.main import main
from regrow.compress.families import adapter_for


def test_mla_export_loads_in_plain_transformers_with_its_latent_ranks(family_models, data_dir, tmp_path):
    """DeepSeek-V3 pruned in heads, both latent ranks, experts, shared experts and layers: a process
    that never imports regrow loads it with exactly the target's values (num_key_value_heads
    following the heads, head sizes kept), HF's parameter count is the target's, and the latents'
    norms hold the source's kept channels."""
    out = tmp_path / "v3"
    target = dict(FAMILY_TARGETS["deepseek_v3"]) | {"n_routed_experts": 4}
    del target["num_experts"]
    assert prune(family_models["deepseek_v3"], target, out, data_dir, tmp_path, "activation") == 0
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["exactness"]["max_abs_logit_diff"] < 1e-4
    keys = ("num_attention_heads", "num_key_value_heads", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim",
            "qk_rope_head_dim", "v_head_dim", "n_routed_experts", "n_shared_experts", "moe_intermediate_size",
            "first_k_dense_replace", "num_hidden_layers")
    got = load_without_regrow(out, keys)
    assert got["finite"] and got["parameters"] == report["target"]["parameters"]
    assert {k: got[k] for k in keys} == {
        "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": 16, "kv_lora_rank": 8, "qk_nope_head_dim": 8,
        "qk_rope_head_dim": 4, "v_head_dim": 6, "n_routed_experts": 4, "n_shared_experts": 1, "moe_intermediate_size": 8,
        "first_k_dense_replace": int(0 in report["kept"]["layers"]), "num_hidden_layers": 3}
    source, pruned = (AutoModelForCausalLM.from_pretrained(p) for p in (family_models["deepseek_v3"], out))
    old = report["kept"]["layers"][0]
    kept = report["kept"]["per_layer"][str(old)]
    assert len(kept["q_latent"]) == 16 and len(kept["kv_latent"]) == 8
    for norm, unit in (("q_a_layernorm", "q_latent"), ("kv_a_layernorm", "kv_latent")):
        torch.testing.assert_close(getattr(pruned.model.layers[0].self_attn, norm).weight.detach(),
                                   getattr(source.model.layers[old].self_attn, norm).weight.detach()[kept[unit]])
    # a kept head keeps its whole query (nope and rope rows) and its key-nope and value rows
    qk, kv = 8 + 4, 8 + 6
    rows = [h * qk + i for h in kept["heads"] for i in range(qk)]
    q_b = source.model.layers[old].self_attn.q_b_proj.weight.detach()[rows][:, kept["q_latent"]]
    torch.testing.assert_close(pruned.model.layers[0].self_attn.q_b_proj.weight.detach(), q_b)
    assert pruned.model.layers[0].self_attn.kv_b_proj.weight.shape == (4 * kv, 8)


def test_the_latent_score_is_the_mean_magnitude_entering_the_up_projection():
    """A latent channel scores as an MLP channel: per sample the mean |x| over tokens where the
    normed latent enters q_b_proj / kv_b_proj, L2 over samples (hooks on plain transformers)."""
    for up, unit in (("q_b_proj", "q_latent"), ("kv_b_proj", "kv_latent")):
        _, seen, scores = inputs_and_scores("deepseek_v3", lambda layer, up=up: getattr(layer.self_attn, up), 8)
        assert set(seen) == {0, 1, 2, 3}
        for layer, x in seen.items():
            per_sample = x.reshape(3, 12, -1).double().abs().mean(1)
            torch.testing.assert_close(getattr(scores, unit)[layer], per_sample.square().sum(0).sqrt(), rtol=1e-5, atol=1e-8)


def test_mla_flops_count_query_key_and_value_sizes():
    """Training FLOPs/token = 6 x active non-embedding parameters + 6 x head + the attention term
    6 x L x H x (nope + rope + v) x T (scores over the query/key size, values over v)."""
    from regrow.models.flops import model_shape, training_flops_per_token

    model = make_family_model("deepseek_v3", vocab_size=97)
    experts = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    embed, head = model.model.embed_tokens.weight.numel(), model.lm_head.weight.numel()
    active = sum(p.numel() for p in model.parameters()) - embed - head - experts + experts * 2 / 8
    attention = 6 * 4 * 8 * (8 + 4 + 6) * 32
    assert training_flops_per_token(model_shape(model), 32) == pytest.approx(6 * active + 6 * head + attention, rel=1e-12)


@pytest.mark.parametrize("family, target, expect", [
    ("deepseek_v3", {"kv_lora_rank": 20}, "target kv_lora_rank 20 is larger than the source's 16"),
    ("deepseek_v2", {"q_lora_rank": 8}, "q_lora_rank names a part the model does not have (no query latent"),
    ("deepseek_v3", {"num_experts": 3}, "target num_experts 3 does not divide into the 2 kept expert groups"),
    ("deepseek_v3", {"n_group": 1}, "target num_experts 8 does not divide into the 1 kept expert groups (n_group) with "
                                    "2..4 experts in each; allowed num_experts: 2, 3, 4"),
    ("deepseek_v2", {"n_group": 1, "num_experts": 2}, "target topk_group 2 is larger than the 1 expert groups left"),
    ("deepseek_v3", {"num_attention_heads": 4, "num_key_value_heads": 2}, "has no grouped-query attention"),
    ("glm4_moe", {"moe_intermediate_size": 8, "shared_expert_intermediate_size": 12},
     "shared_expert_intermediate_size 12 is not a multiple of moe_intermediate_size 8; allowed: 8, 16, 24, 32"),
])
def test_bad_big_moe_targets_are_refused_before_any_work(family, target, expect, family_models, data_dir, tmp_path, capsys):
    capsys.readouterr()
    code = prune(family_models[family], target, tmp_path / "out", data_dir, tmp_path, "magnitude")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expect in err[0], err
    assert not (tmp_path / "out").exists()


def test_deepseek_v2_groups_may_keep_one_expert_each(family_models, data_dir, tmp_path):
    """V2 scores a group by its best expert: one kept expert per group is a legal target."""
    out = tmp_path / "v2"
    assert prune(family_models["deepseek_v2"], {"num_experts": 4}, out, data_dir, tmp_path, "magnitude") == 0
    assert json.loads((out / "config.json").read_text())["n_routed_experts"] == 4


@pytest.mark.parametrize("family", ["deepseek_v3", "glm4_moe", "gpt_oss"])
def test_a_pruned_big_moe_continues_training_and_resumes_exactly(family, family_models, tokenizer_dir, data_dir, tmp_path):
    from regrow.config import from_dict
    from regrow.train.config import RunConfig
    from regrow.train.trainer import Trainer

    init = tmp_path / "init"
    spec_path = tmp_path / "t.yaml"
    spec_path.write_text(yaml.safe_dump(FAMILY_TARGETS[family]))
    assert main(["prune", "--model", str(family_models[family]), "--target", str(spec_path), "--method", "magnitude",
                 "--out", str(init), "--no-progress"]) == 0

    def train(out, steps, resume=False):
        spec = recipe(tokenizer_dir, data_dir, out, model={"init": str(init)})
        spec["train"].update(steps=steps, checkpoint_every=2, eval_every=2)
        spec["schedule"]["total_steps"] = 4
        trainer = Trainer(from_dict(RunConfig, spec), resume=resume)
        trainer.run()
        return dict(trainer.model.named_parameters())

    start = {k: p.detach().clone() for k, p in AutoModelForCausalLM.from_pretrained(init).named_parameters()}
    whole = train(tmp_path / "whole", 4)
    assert any(not torch.equal(whole[k].detach(), v) for k, v in start.items() if ".experts." in k)
    train(tmp_path / "resumed", 2)
    resumed = train(tmp_path / "resumed", 4, resume=True)
    for name, param in resumed.items():
        assert torch.equal(param, whole[name]), name


def test_gpt_oss_export_keeps_sinks_per_head_and_channel_pairs_per_expert(family_models, data_dir, tmp_path):
    """gpt-oss pruned in heads, experts, expert channels, hidden and layers: plain transformers
    loads it with the target's config, every kept head keeps its own sink, every kept expert its
    kept channels' (gate, up) column pairs and biases, and the layer types follow the kept layers."""
    out = tmp_path / "oss"
    assert prune(family_models["gpt_oss"], FAMILY_TARGETS["gpt_oss"], out, data_dir, tmp_path, "activation") == 0
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["exactness"]["max_abs_logit_diff"] < 1e-4
    keys = ("num_attention_heads", "num_key_value_heads", "num_local_experts", "num_experts_per_tok", "intermediate_size",
            "hidden_size", "num_hidden_layers", "layer_types")
    got = load_without_regrow(out, keys)
    assert got["finite"] and got["parameters"] == report["target"]["parameters"]
    source, pruned = (AutoModelForCausalLM.from_pretrained(p) for p in (family_models["gpt_oss"], out))
    layers = report["kept"]["layers"]
    assert got["layer_types"] == [source.config.layer_types[i] for i in layers]
    assert {k: got[k] for k in keys[:-1]} == {"num_attention_heads": 4, "num_key_value_heads": 2, "num_local_experts": 5,
                                              "num_experts_per_tok": 2, "intermediate_size": 24, "hidden_size": 48,
                                              "num_hidden_layers": 3}
    for new, old in enumerate(layers):
        kept = report["kept"]["per_layer"][str(old)]
        src, dst = source.model.layers[old], pruned.model.layers[new]
        torch.testing.assert_close(dst.self_attn.sinks.detach(), src.self_attn.sinks.detach()[kept["heads"]])
        hidden = report["kept"]["hidden"]
        for slot, expert in enumerate(kept["experts"]):
            channels = kept["expert_channels"][slot]
            pairs = [2 * c + i for c in channels for i in (0, 1)]
            expected = src.mlp.experts.gate_up_proj.detach()[expert][hidden][:, pairs]
            torch.testing.assert_close(dst.mlp.experts.gate_up_proj.detach()[slot], expected)
            torch.testing.assert_close(dst.mlp.experts.gate_up_proj_bias.detach()[slot],
                                       src.mlp.experts.gate_up_proj_bias.detach()[expert][pairs])
        torch.testing.assert_close(dst.mlp.router.bias.detach(), src.mlp.router.bias.detach()[kept["experts"]])


def oss_gate(gate_up: torch.Tensor, alpha: float, limit: float) -> torch.Tensor:
    """gpt-oss's clamped SwiGLU over interleaved (gate, up) columns, written out."""
    gate, up = gate_up[..., 0::2].clamp(max=limit), gate_up[..., 1::2].clamp(-limit, limit)
    return (up + 1) * gate * torch.sigmoid(alpha * gate)


def test_wanda_prunes_each_gpt_oss_expert_on_its_routed_tokens(family_models, data_dir, tmp_path):
    """The transposed experts are pruned as linear layers [out, in] on the tokens routed to each
    expert: gate_up by Wanda's formula on the hidden states, down on the clamped SwiGLU of the
    pruned gate_up plus its bias (the masks are stored in the model's own [in, out] layout)."""
    from test_sparse import routed_inputs, sparse_prune, wanda_mask

    out = tmp_path / "oss"
    assert sparse_prune(family_models["gpt_oss"], "wanda", out, data_dir, "--sparsity", "0.5") == 0
    masks = load_file(out / "sparsity_mask.safetensors")
    experts, layer, routed = routed_inputs(family_models, "gpt_oss", out, data_dir)
    prefix = f"model.layers.{layer}.mlp"
    assert not any(key.startswith(f"{prefix}.router.") for key in masks)
    config = experts.config
    for e, x in routed.items():
        assert len(x), f"expert {e} got no calibration token"
        gate_up = experts.gate_up_proj[e].detach().T  # [2 x width, hidden]
        keep = wanda_mask(gate_up, x)
        assert torch.equal(masks[f"{prefix}.experts.gate_up_proj"][e], keep.T), e
        inner = oss_gate(x.double() @ (gate_up * keep).double().T + experts.gate_up_proj_bias[e].detach().double(),
                         config.swiglu_alpha, config.swiglu_limit)
        down = experts.down_proj[e].detach().T
        assert torch.equal(masks[f"{prefix}.experts.down_proj"][e], wanda_mask(down, inner).T), e


def test_fire_orthogonalises_gpt_oss_gate_up_and_down_of_each_expert():
    """The gate columns, the up columns (interleaved) and down of each expert, each as a [out, in]
    matrix on its own; biases and sinks kept."""
    from test_reinit import params

    from regrow.compress.reinit import REINITS, newton_schulz

    model = make_family_model("gpt_oss", 97)
    before = params(model)
    after = params(REINITS["fire"](model, adapter_for(model.config), 0, 0.8, 0.01))
    prefix = "model.layers.2.mlp.experts."
    for e in (0, 5):
        for part in (0, 1):
            torch.testing.assert_close(after[prefix + "gate_up_proj"][e][:, part::2].T,
                                       newton_schulz(before[prefix + "gate_up_proj"][e][:, part::2].T))
        torch.testing.assert_close(after[prefix + "down_proj"][e].T, newton_schulz(before[prefix + "down_proj"][e].T))
    for name in ("gate_up_proj_bias", "down_proj_bias"):
        assert torch.equal(after[prefix + name], before[prefix + name])
    assert torch.equal(after["model.layers.2.self_attn.sinks"], before["model.layers.2.self_attn.sinks"])


def test_gpt_oss_flops_count_k_of_e_experts_and_their_biases():
    """Active parameters: every expert tensor and expert bias counts k/E, the router, sinks and
    attention fully; attention term 12 L H d_head T (no MLA)."""
    from regrow.models.flops import model_shape, training_flops_per_token

    model = make_family_model("gpt_oss", vocab_size=97)
    experts = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    embed, head = model.model.embed_tokens.weight.numel(), model.lm_head.weight.numel()
    active = sum(p.numel() for p in model.parameters()) - embed - head - experts + experts * 2 / 8
    attention = 12 * 4 * 8 * 8 * 32
    assert training_flops_per_token(model_shape(model), 32) == pytest.approx(6 * active + 6 * head + attention, rel=1e-12)
