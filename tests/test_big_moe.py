"""The big open mixtures of experts (issue 30): DeepSeek-V3 and V2 with multi-head latent attention
(heads whole, the latent ranks as units of their own), GLM-4-MoE; DeepSeek's expert layout
(dense first layers, shared experts). Every structured method's exactness, streaming and the
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
from test_hybrid import inputs_and_scores, load_without_regrow, prune
from transformers import AutoModelForCausalLM

from regrow.cli.main import main


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


@pytest.mark.parametrize("family", ["deepseek_v3", "glm4_moe"])
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
