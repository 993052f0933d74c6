"""Hybrid models (issue 29): Granite-4 (`granitemoehybrid`) with Mamba-2 and attention layers,
experts and a shared MLP, and its dense variant; Nemotron-H, Falcon-H1, LFM2; the gated-DeltaNet
hybrids Qwen3-Next and Qwen3.5. Every structured method's exactness and the
streaming prune run in the every-family tests (test_prune_cli, test_prune_exact,
test_streaming_prune); here: the Mamba-2 head score against a formula over plain transformers'
activations, the export in a process that never imports regrow, sheared masks on Mamba heads,
the family's own target keys, bad targets, and continued training with an exact resume."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import make_family_model, recipe
from transformers import AutoModelForCausalLM

from regrow.cli.main import main
from regrow.compress.families import adapter_for
from regrow.compress.importance import ActivationStats

FAST = ["--seq-len", "16", "--batch-size", "2", "--calibration-samples", "4", "--no-progress"]


def prune(model, target: dict, out, data_dir, tmp_path, method="activation", *extra) -> int:
    spec = tmp_path / f"{out.name}.yaml"
    spec.write_text(yaml.safe_dump(target))
    return main(["prune", "--model", str(model), "--target", str(spec), "--method", method, "--data", str(data_dir),
                 "--out", str(out), *FAST, *extra])


def load_without_regrow(out, keys: tuple[str, ...], extra: str = "") -> dict:
    """The export's config values `keys`, its parameter count and whether its logits are finite,
    from a process that loads it with plain transformers and never imports regrow; `extra`: more
    `name: expression` entries for the printed dict (the model is `m`)."""
    code = (
        "import json, sys, torch\n"
        "from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(out)!r})\n"
        "assert 'regrow' not in sys.modules\n"
        "out = m(torch.tensor([[1, 2, 3, 4, 5]])).logits\n"
        f"print(json.dumps({{k: getattr(m.config, k) for k in {keys!r}}} | {{{extra}"
        "'parameters': sum(p.numel() for p in m.parameters()), 'finite': bool(torch.isfinite(out).all())}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def inputs_and_scores(family: str, module_of, seed: int):
    """A tiny model's inputs to one module per layer (hooks on plain transformers, `module_of(layer)`:
    that module or None), and regrow's activation scores over the same batch of 3 x 12 tokens."""
    model = make_family_model(family, vocab_size=97).eval()
    ids = torch.randint(0, 97, (3, 12), generator=torch.Generator().manual_seed(seed))
    seen = {}
    handles = [module_of(layer).register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(i, a[0].detach()))
               for i, layer in enumerate(model.model.layers) if module_of(layer) is not None]
    with torch.no_grad():
        model(ids)
    for handle in handles:
        handle.remove()
    stats = ActivationStats(model, adapter_for(model.config))
    with torch.no_grad():
        model(ids)
    stats.remove()
    return model, seen, stats.scores()


def test_mamba_head_score_is_the_norm_of_its_channels_entering_out_proj():
    """Per sample, the mean over tokens of each head's L2 norm at out_proj's input; the L2 over
    samples (Minitron's batch reduction), computed from hooks on plain transformers' mixer."""
    model, seen, scores = inputs_and_scores("granitemoehybrid", lambda layer: layer.mamba and layer.mamba.out_proj, 3)
    scores = scores.mamba_head
    heads, head_dim = model.config.mamba_n_heads, model.config.mamba_d_head
    assert set(seen) == {0, 2, 3}
    for layer, x in seen.items():
        per_sample = x.view(3, 12, heads, head_dim).double().norm(dim=-1).mean(1)  # [samples, heads]
        torch.testing.assert_close(scores[layer], per_sample.square().sum(0).sqrt(), rtol=1e-5, atol=1e-8)
    assert not scores[1].any()  # the attention layer has no Mamba heads to score


def test_mamba_channel_score_is_the_norm_over_heads_entering_out_proj():
    """A Mamba head's channel p (the same in every head): per token the L2 norm over the heads of
    out_proj's input at p, mean over tokens, L2 over samples (from hooks on plain transformers)."""
    model, seen, scores = inputs_and_scores("nemotron_h", lambda layer: layer.mixer.out_proj if hasattr(layer.mixer, "A_log") else None, 4)
    scores = scores.mamba_channel
    heads, head_dim = model.config.mamba_num_heads, model.config.mamba_head_dim
    assert set(seen) == {0, 3} and scores.shape == (4, head_dim)
    for layer, x in seen.items():
        per_sample = x.view(3, 12, heads, head_dim).double().norm(dim=2).mean(1)  # [samples, channels]
        torch.testing.assert_close(scores[layer], per_sample.square().sum(0).sqrt(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("family, key, width_key", [("falcon_h1", "mamba_d_head", "mamba_d_ssm"),
                                                    ("nemotron_h", "mamba_head_dim", None)])
def test_a_smaller_mamba_head_size_exports_the_config_that_builds_it(family, key, width_key, family_models, data_dir, tmp_path):
    """mamba_head_dim (under the family's own name) keeps the same channels of every head: the
    export states it (and Falcon-H1's Mamba width, heads x head size), loads without regrow with
    the target's parameter count, and its in_proj keeps exactly the z and x rows of those channels."""
    out = tmp_path / family
    assert prune(family_models[family], {key: 8, "mamba_num_heads": 4}, out, data_dir, tmp_path, "activation") == 0
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["exactness"]["max_abs_logit_diff"] < 1e-4
    got = load_without_regrow(out, (key, width_key) if width_key else (key,))
    assert got[key] == 8 and got["finite"] and got["parameters"] == report["target"]["parameters"]
    if width_key:
        assert got[width_key] == 4 * 8
    source = AutoModelForCausalLM.from_pretrained(family_models[family])
    pruned = AutoModelForCausalLM.from_pretrained(out)
    def mixer(model, index):  # Falcon-H1's `mamba`, Nemotron-H's `mixer` (Mamba in some layers)
        return getattr(model.model.layers[index], "mamba", None) or model.model.layers[index].mixer

    layer = next(i for i in range(len(source.model.layers)) if hasattr(mixer(source, i), "A_log"))
    kept = report["kept"]["per_layer"][str(layer)]
    heads, channels, head_dim = kept["mamba_heads"], kept["mamba_channels"], 12
    assert len(channels) == 8 and len(heads) == 4
    rows = [h * head_dim + c for h in heads for c in channels]  # z rows, then x rows
    width = source.config.mamba_num_heads if family == "nemotron_h" else source.config.mamba_n_heads
    z_and_x = mixer(source, layer).in_proj.weight.detach()[rows + [width * head_dim + r for r in rows]]
    new_layer = report["kept"]["layers"].index(layer)
    torch.testing.assert_close(mixer(pruned, new_layer).in_proj.weight.detach()[: 2 * len(rows)],
                               z_and_x[:, report["kept"]["hidden"]])


def test_export_loads_in_plain_transformers_with_the_target_config(family_models, data_dir, tmp_path):
    """Pruned with the family's own keys (mamba_n_heads, shared_intermediate_size, intermediate_size
    as the expert width): a process that never imports regrow loads it, its config says the target
    (mamba_expand derived), its parameter count is HF's own count of that config, and it runs."""
    out = tmp_path / "granite"
    target = {"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
              "num_local_experts": 3, "intermediate_size": 24, "shared_intermediate_size": 32, "mamba_n_heads": 6}
    assert prune(family_models["granitemoehybrid"], target, out, data_dir, tmp_path) == 0
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["exactness"]["max_abs_logit_diff"] < 1e-4
    got = load_without_regrow(out, ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
                                    "num_local_experts", "intermediate_size", "shared_intermediate_size", "mamba_n_heads",
                                    "mamba_d_head", "mamba_n_groups", "mamba_expand", "layer_types"))
    assert got["finite"]
    assert {k: got[k] for k in ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
                                "intermediate_size", "shared_intermediate_size", "mamba_n_heads")} == {
        "num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 24, "shared_intermediate_size": 32, "mamba_n_heads": 6}
    assert got["num_local_experts"] == 3 and got["mamba_d_head"] == 16 and got["mamba_n_groups"] == 2
    assert got["mamba_expand"] == 6 * 16 // 48
    kinds = ["mamba", "attention", "mamba", "mamba"]
    assert [("attention" if t == "attention" or "full" in t else "mamba") for t in got["layer_types"]] == [
        kinds[i] for i in report["kept"]["layers"]]
    assert "attention" in [kinds[i] for i in report["kept"]["layers"]]  # the only attention layer is kept
    assert got["parameters"] == report["target"]["parameters"]


def test_sheared_learns_masks_on_mamba_heads(family_models, data_dir, tmp_path):
    out = tmp_path / "sheared"
    target = {"mamba_num_heads": 4, "mamba_d_head": 8, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2}
    assert prune(family_models["granitemoehybrid"], target, out, data_dir, tmp_path, "sheared",
                 "--set", "sheared.steps=4") == 0
    report = json.loads((out / "pruning_report.json").read_text())
    learned = report["method_details"]["learned"]
    assert learned["mamba_head"] == {"rows": 4, "units": 8, "target_sparsity": 0.5}
    assert learned["mamba_channel"] == {"rows": 4, "units": 16, "target_sparsity": 0.5}
    history = report["method_details"]["history"]
    assert history[-1]["step"] == 4 and "mamba_head" in history[-1]["expected_sparsity"]
    assert report["exactness"]["max_abs_logit_diff"] < 1e-4
    config = json.loads((out / "config.json").read_text())
    assert config["mamba_n_heads"] == 4 and config["mamba_d_head"] == 8 and config["mamba_expand"] == 1


@pytest.mark.parametrize("target, expect", [
    ({"mamba_num_heads": 5}, "target mamba_num_heads 5 does not divide into the 2 Mamba groups"),
    ({"mamba_n_heads": 4, "hidden_size": 48}, "mamba heads 4 x head_dim 16 = 64 is not a multiple of hidden_size 48"),
    ({"num_hidden_layers": 1}, "cannot keep a layer of each kind the source has (attention, mamba)"),
    ({"mamba_d_conv": 2}, "unknown key(s) mamba_d_conv; allowed: num_hidden_layers"),
    ({"mamba_n_groups": 1, "mamba_n_heads": 6}, "target has 6 Mamba heads per group but the source only 4; with 1 groups "
                                                "allowed mamba_num_heads: multiples of 1 up to 4"),
    ({"mamba_n_heads": 4, "mamba_num_heads": 6}, "mamba_n_heads 4 and mamba_num_heads 6 name the same size"),
    ({"mamba_d_head": 20}, "target mamba_head_dim 20 is larger than the source's 16"),
    ({"mamba_d_head": 12}, "mamba heads 8 x head_dim 12 = 96 is not a multiple of hidden_size 64"),
])
def test_bad_hybrid_targets_are_refused_before_any_work(target, expect, family_models, data_dir, tmp_path, capsys):
    capsys.readouterr()
    assert prune(family_models["granitemoehybrid"], target, tmp_path / "out", data_dir, tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert not (tmp_path / "out").exists()


def test_mamba_heads_on_a_model_without_mamba_layers_are_refused(family_models, data_dir, tmp_path, capsys):
    capsys.readouterr()
    assert prune(family_models["llama"], {"mamba_num_heads": 2}, tmp_path / "out", data_dir, tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert "mamba_num_heads names a part the model does not have (no Mamba-2 layer)" in err


def _train(init, tokenizer_dir, data_dir, out, steps, resume=False):
    from regrow.config import from_dict
    from regrow.train.config import RunConfig
    from regrow.train.trainer import Trainer

    spec = recipe(tokenizer_dir, data_dir, out, model={"init": str(init)})
    spec["train"].update(steps=steps, checkpoint_every=2, eval_every=2)
    spec["schedule"]["total_steps"] = 4
    trainer = Trainer(from_dict(RunConfig, spec), resume=resume)
    trainer.run()
    return trainer


@pytest.mark.parametrize("family", ["granitemoehybrid", "granite4-dense", "nemotron_h", "falcon_h1", "lfm2", "lfm2_moe", "qwen3_next",
                                    "qwen3_5", "qwen3_5_moe", "olmo_hybrid", "nemotron_h-moe"])
def test_a_pruned_hybrid_continues_training_and_resumes_exactly(family, family_models, tokenizer_dir, data_dir, tmp_path):
    """The pruned hybrid trains on the CPU (transformers' PyTorch Mamba / DeltaNet paths): the
    weights of its Mamba, short-conv or DeltaNet input projections move; stopped at step 2 and
    resumed, the weights equal the uninterrupted run's."""
    from conftest import FAMILY_TARGETS

    init = tmp_path / "init"
    assert prune(family_models[family], FAMILY_TARGETS[family], init, data_dir, tmp_path) == 0
    start = {k: p.detach().clone() for k, p in AutoModelForCausalLM.from_pretrained(init).named_parameters()}
    whole = _train(init, tokenizer_dir, data_dir, tmp_path / "whole", 4)
    params = dict(whole.model.named_parameters())
    moving = (".in_proj", "linear_attn.v_proj")  # Mamba, conv, DeltaNet (OLMo-hybrid's unfused)
    assert any(not torch.equal(params[k].detach(), v) for k, v in start.items() if any(m in k for m in moving))
    _train(init, tokenizer_dir, data_dir, tmp_path / "resumed", 2)
    resumed = _train(init, tokenizer_dir, data_dir, tmp_path / "resumed", 4, resume=True)
    for name, param in resumed.model.named_parameters():
        assert torch.equal(param, params[name]), name


def test_flops_count_attention_layers_and_mamba_scans():
    """Training FLOPs/token = 6 x active non-embedding parameters + 6 x head + 12 x attention
    layers x heads x head_dim x T + 3 x the scans' forward FLOPs (5 x heads x head_dim x state per
    Mamba layer), with the sizes read here from the config."""
    from regrow.models.flops import model_shape, training_flops_per_token

    model = make_family_model("granitemoehybrid", vocab_size=97)
    c = model.config
    experts = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    embed = model.model.embed_tokens.weight.numel()
    head = model.lm_head.weight.numel()
    active = sum(p.numel() for p in model.parameters()) - embed - head - experts + experts * 2 / 4
    scans = 3 * 5 * c.mamba_n_heads * c.mamba_d_head * c.mamba_d_state  # three Mamba layers
    attention = 12 * 1 * c.num_attention_heads * (c.hidden_size // c.num_attention_heads) * 32
    expected = 6 * active + 6 * head + attention + 3 * scans
    assert training_flops_per_token(model_shape(model), 32) == pytest.approx(expected, rel=1e-12)


def test_nemotron_h_flops_count_its_attention_layers_only():
    """Nemotron-H's layers are Mamba, attention or MLP mixers: the attention term counts the one
    attention layer, the scans the two Mamba layers."""
    from regrow.models.flops import model_shape

    model = make_family_model("nemotron_h", vocab_size=97)
    c = model.config
    shape = model_shape(model)
    assert shape.num_layers == 1
    assert shape.ssm_flops == 2 * 5 * c.mamba_num_heads * c.mamba_head_dim * c.ssm_state_size


def test_nemotron_h_moe_export_loads_in_plain_transformers_with_its_groups(family_models, data_dir, tmp_path):
    """Nemotron-H MoE (latent experts, 12 experts in 4 groups, top-2 groups): pruned to 3 groups of
    2 experts, top-1 group, with the config's own key names; a process that never imports regrow
    loads it with exactly those values, HF's parameter count equals the target's, the latent size
    and each group's shape stay (the router's bias has one entry per kept expert)."""
    out = tmp_path / "moe"
    target = {"n_routed_experts": 6, "n_group": 3, "topk_group": 1, "num_experts_per_tok": 2,
              "moe_shared_expert_intermediate_size": 16, "moe_intermediate_size": 16, "hidden_size": 48}
    assert prune(family_models["nemotron_h-moe"], target, out, data_dir, tmp_path, "activation") == 0
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["exactness"]["max_abs_logit_diff"] < 1e-4
    got = load_without_regrow(out, tuple(target) + ("moe_latent_size", "layers_block_type"),
                              "'bias': list(m.model.layers[1].mixer.gate.e_score_correction_bias.shape), ")
    assert {k: got[k] for k in target} == target and got["moe_latent_size"] == 32 and got["finite"]
    assert got["bias"] == [6] and got["parameters"] == report["target"]["parameters"]
    for kept in report["kept"]["per_layer"].values():  # two kept experts in each of three kept groups of three
        groups = [e // 3 for e in kept["experts"]]
        assert len(set(groups)) == 3 and all(groups.count(g) == 2 for g in set(groups))


def test_a_ratio_keeps_expert_groups_even(family_models, tmp_path):
    """--target-ratio on group-limited routing: experts go first, in equal numbers per group."""
    out = tmp_path / "ratio"
    assert main(["prune", "--model", str(family_models["nemotron_h-moe"]), "--target-ratio", "0.7", "--method", "magnitude",
                 "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "pruning_report.json").read_text())
    experts = report["target"]["shape"]["num_experts"]
    assert experts in (8, 12) and report["target"]["shape"]["n_group"] == 4
    for kept in report["kept"]["per_layer"].values():
        groups = [e // 3 for e in kept["experts"]]
        assert all(groups.count(g) == experts // 4 for g in range(4))


@pytest.mark.parametrize("target, expect", [
    ({"num_experts": 7}, "target num_experts 7 does not divide into the 4 kept expert groups (n_group) with 2..3 experts "
                         "in each; allowed num_experts: 8, 12"),
    ({"n_group": 1, "num_experts": 3}, "target topk_group 2 is larger than the 1 expert groups left (n_group); allowed: 1..1"),
    ({"topk_group": 1, "num_experts": 8}, "target num_experts_per_tok 3 is more than the experts of the topk_group 1 groups"),
    ({"n_group": 5}, "target n_group 5 is larger than the source's 4"),
])
def test_bad_expert_group_targets_are_refused_before_any_work(target, expect, family_models, data_dir, tmp_path, capsys):
    capsys.readouterr()
    code = prune(family_models["nemotron_h-moe"], target, tmp_path / "out", data_dir, tmp_path, "magnitude")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expect in err[0], err
    assert not (tmp_path / "out").exists()


def test_falcon_h1_flops_count_both_mixers_of_every_layer():
    """Falcon-H1 runs Mamba-2 and attention side by side in each of its 4 layers."""
    from regrow.models.flops import model_shape

    model = make_family_model("falcon_h1", vocab_size=97)
    c = model.config
    shape = model_shape(model)
    assert shape.num_layers == 4
    assert shape.ssm_flops == 4 * 5 * c.mamba_n_heads * c.mamba_d_head * c.mamba_d_state


def test_lfm2_conv_channels_are_units_of_their_own_and_the_mlp_width_is_the_real_one(family_models, data_dir, tmp_path):
    """LFM2's MLP is 2/3 of intermediate_size rounded up to block_multiple_of (144 -> 96, computed
    here); the export states the pruned width with the adjustment off. Its short convs keep as
    many channels as the new hidden size, chosen by their own score: the kept conv channels of a
    layer are the top-48 of mean |y| at its out_proj's input, not the kept hidden channels; only
    the one attention layer attends in the FLOPs."""
    from regrow.models.flops import model_shape

    source = AutoModelForCausalLM.from_pretrained(family_models["lfm2"])
    assert source.model.layers[0].feed_forward.w1.out_features == 16 * -(-int(2 * 144 / 3) // 16) == 96
    assert model_shape(source).num_layers == 1
    out = tmp_path / "lfm2"
    target = {"hidden_size": 48, "intermediate_size": 64}
    assert prune(family_models["lfm2"], target, out, data_dir, tmp_path, "magnitude") == 0
    config = json.loads((out / "config.json").read_text())
    assert config["block_auto_adjust_ff_dim"] is False and config["intermediate_size"] == 64
    pruned = AutoModelForCausalLM.from_pretrained(out)
    assert pruned.model.layers[0].feed_forward.w1.out_features == 64 and pruned.model.layers[0].conv.conv.weight.shape[0] == 48
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["exactness"]["max_abs_logit_diff"] < 1e-4
    # magnitude: a conv channel's score is the norm of its three in_proj rows, conv row and out_proj column
    conv = source.model.layers[0].conv
    squares = (conv.in_proj.weight.detach().view(3, 64, -1).square().sum((0, 2)) + conv.in_proj.bias.detach().view(3, 64).square().sum(0)
               + conv.conv.weight.detach().square().sum((1, 2)) + conv.conv.bias.detach().square()
               + conv.out_proj.weight.detach().square().sum(0))
    kept = squares.argsort(descending=True)[:48].sort().values
    torch.testing.assert_close(pruned.model.layers[0].conv.conv.weight.detach(), conv.conv.weight.detach()[kept])


@pytest.mark.parametrize("family", ["granitemoehybrid", "nemotron_h", "falcon_h1", "lfm2", "qwen3_next"])
def test_sensitivity_runs_on_a_hybrid(family, family_models, data_dir, capsys):
    """Parameter sensitivity (noise on every weight, Mamba and conv ones included) on each hybrid:
    finite, and larger noise hurts more."""
    args = ["sensitivity", "--model", str(family_models[family]), "--data", str(data_dir), "--gamma", "0.1", "8",
            "--seeds", "1", "--seq-len", "16", "--max-tokens", "512", "--json"]
    capsys.readouterr()
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)["models"][0]["sensitivity"]
    for domain in ("prose", "code"):
        small, large = result["0.1"][domain]["mean"], result["8"][domain]["mean"]
        assert torch.isfinite(torch.tensor([small, large])).all() and large > small


def test_deltanet_value_head_score_is_the_norm_of_its_channels_entering_out_proj():
    """As for Mamba heads: per sample the mean over tokens of each value head's L2 norm at the
    DeltaNet's out_proj input, then the L2 over samples (hooks on plain transformers' mixer)."""
    model, seen, scores = inputs_and_scores(
        "qwen3_next", lambda layer: layer.linear_attn.out_proj if hasattr(layer, "linear_attn") else None, 3)
    scores = scores.linear_head
    heads, head_dim = model.config.linear_num_value_heads, model.config.linear_value_head_dim
    assert set(seen) == {0, 2, 3}
    for layer, x in seen.items():
        per_sample = x.view(3, 12, heads, head_dim).double().norm(dim=-1).mean(1)
        torch.testing.assert_close(scores[layer], per_sample.square().sum(0).sqrt(), rtol=1e-5, atol=1e-8)
    assert not scores[1].any()  # the attention layer has no DeltaNet heads


def test_deltanet_magnitude_shares_key_rows_among_their_value_heads():
    """Magnitude of a value head: the squares of its rows (v, z, b, a, conv, dt_bias, A_log) and
    out_proj columns, plus an equal share of its key head's q / k rows and conv channels; here
    Qwen3.5's unfused projections, read directly."""
    from regrow.compress.importance import weight_magnitude

    model = make_family_model("qwen3_5", vocab_size=97)
    c = model.config
    hk, hv, dk, dv = c.linear_num_key_heads, c.linear_num_value_heads, c.linear_key_head_dim, c.linear_value_head_dim
    r = hv // hk
    scores = weight_magnitude(model, adapter_for(model.config)).linear_head
    mixer = model.model.layers[0].linear_attn
    qkv, conv = mixer.in_proj_qkv.weight.detach().double(), mixer.conv1d.weight.detach().double().flatten(1)
    for head in range(hv):
        key, values = head // r, slice(2 * hk * dk + head * dv, 2 * hk * dk + (head + 1) * dv)
        keys = [slice(key * dk, (key + 1) * dk), slice(hk * dk + key * dk, hk * dk + (key + 1) * dk)]
        own = (qkv[values].square().sum() + conv[values].square().sum()
               + mixer.in_proj_z.weight.detach().double()[head * dv:(head + 1) * dv].square().sum()
               + mixer.in_proj_b.weight.detach().double()[head].square().sum()
               + mixer.in_proj_a.weight.detach().double()[head].square().sum()
               + mixer.dt_bias.detach().double()[head] ** 2 + mixer.A_log.detach().double()[head] ** 2
               + mixer.out_proj.weight.detach().double()[:, head * dv:(head + 1) * dv].square().sum())
        shared = sum(qkv[k].square().sum() + conv[k].square().sum() for k in keys) / r
        torch.testing.assert_close(scores[0, head], (own + shared).sqrt(), rtol=1e-6, atol=0)


def test_deltanet_export_loads_in_plain_transformers_with_the_target_config(family_models, data_dir, tmp_path):
    """Qwen3-Next pruned to one key head with two of its three value heads: a process that never
    imports regrow loads it with exactly those sizes and HF's own parameter count, and it runs."""
    out = tmp_path / "next"
    target = {"num_hidden_layers": 3, "linear_num_key_heads": 1, "linear_num_value_heads": 2, "num_attention_heads": 4,
              "num_key_value_heads": 1, "num_experts": 4, "moe_intermediate_size": 16}
    assert prune(family_models["qwen3_next"], target, out, data_dir, tmp_path) == 0
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["exactness"]["max_abs_logit_diff"] < 1e-4
    got = load_without_regrow(out, ("num_hidden_layers", "linear_num_key_heads", "linear_num_value_heads",
                                    "num_attention_heads", "num_key_value_heads", "num_experts", "moe_intermediate_size",
                                    "layer_types"),
                              "'qkvz': list(m.model.layers[0].linear_attn.in_proj_qkvz.weight.shape), "
                              "'conv': list(m.model.layers[0].linear_attn.conv1d.weight.shape), ")
    assert got["finite"] and got["parameters"] == report["target"]["parameters"]
    assert {k: got[k] for k in target} == target
    assert got["qkvz"] == [2 * 8 + 2 * 2 * 12, 64] and got["conv"] == [2 * 8 + 2 * 12, 1, 4]
    kinds = ["linear_attention", "full_attention", "linear_attention", "linear_attention"]
    assert got["layer_types"] == [kinds[i] for i in report["kept"]["layers"]] and "full_attention" in got["layer_types"]


def test_sheared_learns_masks_on_deltanet_value_heads(family_models, data_dir, tmp_path):
    out = tmp_path / "sheared"
    target = {"linear_num_key_heads": 2, "linear_num_value_heads": 2}
    assert prune(family_models["qwen3_5"], target, out, data_dir, tmp_path, "sheared", "--set", "sheared.steps=4") == 0
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["method_details"]["learned"]["linear_head"] == {"rows": 4, "units": 4, "target_sparsity": 0.5}
    assert "linear_head" in report["method_details"]["history"][-1]["expected_sparsity"]
    assert report["exactness"]["max_abs_logit_diff"] < 1e-4
    config = json.loads((out / "config.json").read_text())
    assert (config["linear_num_key_heads"], config["linear_num_value_heads"]) == (2, 2)


@pytest.mark.parametrize("target, expect", [
    ({"linear_num_key_heads": 2, "linear_num_value_heads": 3},
     "target linear_num_value_heads 3 is not a multiple of linear_num_key_heads 2"),
    ({"linear_num_key_heads": 1, "linear_num_value_heads": 4},
     "target has 4 value heads per linear-attention key head but the source only 2; with 1 key heads allowed "
     "linear_num_value_heads: multiples of 1 up to 2"),
    ({"linear_num_value_heads": 8}, "target linear_num_value_heads 8 is larger than the source's 4"),
    ({"linear_key_head_dim": 6}, "unknown key(s) linear_key_head_dim; allowed: num_hidden_layers"),
])
def test_bad_deltanet_targets_are_refused_before_any_work(target, expect, family_models, data_dir, tmp_path, capsys):
    capsys.readouterr()
    assert prune(family_models["qwen3_5"], target, tmp_path / "out", data_dir, tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert not (tmp_path / "out").exists()


def test_deltanet_heads_on_a_model_without_them_are_refused(family_models, data_dir, tmp_path, capsys):
    capsys.readouterr()
    assert prune(family_models["granitemoehybrid"], {"linear_num_value_heads": 2}, tmp_path / "out", data_dir,
                 tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert "linear_num_value_heads names a part the model does not have (no gated-DeltaNet layer)" in err


def test_qwen3_next_flops_count_its_attention_layers_and_deltanet_recurrences():
    """One gated-attention layer attends; each of the three DeltaNet layers adds 7 x value heads x
    key head_dim x value head_dim forward FLOPs per token; parameters are counted whole."""
    from regrow.models.flops import model_shape

    model = make_family_model("qwen3_next", vocab_size=97)
    c = model.config
    shape = model_shape(model)
    assert shape.num_layers == 1
    assert shape.ssm_flops == 3 * 7 * c.linear_num_value_heads * c.linear_key_head_dim * c.linear_value_head_dim


def test_a_multimodal_qwen3_5_checkpoint_prunes_as_its_text_model(data_dir, tmp_path):
    """A Qwen3.5 checkpoint with a vision tower (model_type qwen3_5) loads as its text model: the
    prune of it equals the prune of that text model saved alone, and the export is text-only."""
    from conftest import FAMILY_CONFIGS, FAMILY_TARGETS
    from safetensors.torch import load_file
    from transformers import AutoConfig
    from transformers.models.qwen3_5 import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    text = {k: v for k, v in FAMILY_CONFIGS["qwen3_5"].items() if k != "model_type"}
    text.update(vocab_size=97, hidden_size=64, num_hidden_layers=4, num_attention_heads=8, max_position_embeddings=128)
    vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 64}
    torch.manual_seed(0)
    multimodal = Qwen3_5ForConditionalGeneration(Qwen3_5Config(text_config=text, vision_config=vision,
                                                               tie_word_embeddings=True))
    multimodal.save_pretrained(tmp_path / "mm")
    text_only = AutoModelForCausalLM.from_config(AutoConfig.for_model("qwen3_5_text", **text))
    text_only.load_state_dict({k.replace("model.language_model.", "model."): v for k, v in multimodal.state_dict().items()
                               if not k.startswith("model.visual.")})
    text_only.save_pretrained(tmp_path / "text")
    target = FAMILY_TARGETS["qwen3_5"]
    assert prune(tmp_path / "mm", target, tmp_path / "from_mm", data_dir, tmp_path, "magnitude") == 0
    assert prune(tmp_path / "text", target, tmp_path / "from_text", data_dir, tmp_path, "magnitude") == 0
    a, b = load_file(tmp_path / "from_mm" / "model.safetensors"), load_file(tmp_path / "from_text" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any("visual" in k for k in a)
    assert json.loads((tmp_path / "from_mm" / "config.json").read_text())["model_type"] == "qwen3_5_text"


def test_layer_mask_keeps_the_best_layers_of_each_named_kind():
    """Named kinds keep their best (by score) that many; the other kinds share the rest, each
    keeping at least its best layer."""
    from regrow.compress.select import layer_mask

    kinds = ("mamba", "attention", "mamba", "mamba", "attention", "conv")
    scores = torch.tensor([0.9, 0.1, 0.5, 0.7, 0.2, 0.05])
    # attention: both; the other two layers: the best mamba and the only conv
    assert layer_mask(scores, 4, kinds, (("attention", 2),)).tolist() == [1, 1, 0, 0, 1, 1]
    assert layer_mask(scores, 4, kinds, (("mamba", 2),)).tolist() == [1, 0, 0, 1, 1, 1]
    assert layer_mask(scores, 3, kinds, (("mamba", 1), ("attention", 1), ("conv", 1))).tolist() == [1, 0, 0, 0, 1, 1]


@pytest.mark.parametrize("family, counts, total, kinds", [
    ("granitemoehybrid", {"mamba": 1}, 2, ("mamba", "attention", "mamba", "mamba")),
    ("qwen3_next", {"deltanet": 2}, 3, ("deltanet", "attention", "deltanet", "deltanet")),
])
def test_a_target_may_fix_the_layers_of_a_kind(family, counts, total, kinds, family_models, data_dir, tmp_path):
    """`num_layers_by_kind` alone: that many of the named kind (the best by block influence) and
    every layer of the others; the export's layer types say so."""
    out = tmp_path / "out"
    assert prune(family_models[family], {"num_layers_by_kind": counts}, out, data_dir, tmp_path, "depth") == 0
    report = json.loads((out / "pruning_report.json").read_text())
    kept = report["kept"]["layers"]
    influence = report["method_details"]["block_influence"]
    (kind, count), = counts.items()
    mine = [i for i, k in enumerate(kinds) if k == kind]
    assert len(kept) == total and [i for i in kept if kinds[i] == kind] == sorted(
        sorted(mine, key=lambda i: -influence[i])[:count])
    assert all(i in kept for i, k in enumerate(kinds) if k != kind)
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == total and len(config["layer_types"]) == total


@pytest.mark.parametrize("target, expect", [
    ({"num_layers_by_kind": {"attention": 2}}, "asks for 2 attention layers; the source has 1 (allowed: 1..1"),
    ({"num_layers_by_kind": {"ssm": 1}}, "names layer kind 'ssm', which the model does not have; allowed: mamba (1..3), "
                                         "attention (1..1)"),
    ({"num_layers_by_kind": {"mamba": 1}, "num_hidden_layers": 4}, "target num_hidden_layers 4 does not fit "
                                                                   "num_layers_by_kind (mamba 1); allowed: 2"),
    ({"num_layers_by_kind": {"mamba": 0}}, "asks for 0 mamba layers"),
    ({"num_layers_by_kind": [1]}, "num_layers_by_kind must map layer kinds to counts"),
])
def test_bad_layer_counts_are_refused_before_any_work(target, expect, family_models, data_dir, tmp_path, capsys):
    capsys.readouterr()
    assert prune(family_models["granitemoehybrid"], target, tmp_path / "out", data_dir, tmp_path, "depth") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert not (tmp_path / "out").exists()


def test_layer_counts_on_a_model_of_one_kind_are_refused(family_models, data_dir, tmp_path, capsys):
    capsys.readouterr()
    assert prune(family_models["llama"], {"num_layers_by_kind": {"attention": 2}}, tmp_path / "out", data_dir,
                 tmp_path, "depth") == 2
    assert "this model's layers are all of one kind; give num_hidden_layers" in capsys.readouterr().err


def test_whole_mamba_groups_go_with_their_b_and_c(family_models, data_dir, tmp_path):
    """Granite-4 with 2 groups of 4 heads pruned to 1 group of 4 (the config's own key
    mamba_n_groups): the better group by summed head score stays whole, with its B and C rows;
    the export loads with exactly that shape, and masked == sliced."""
    out = tmp_path / "groups"
    assert prune(family_models["granitemoehybrid"], {"mamba_n_groups": 1, "mamba_n_heads": 4}, out, data_dir,
                 tmp_path) == 0
    report = json.loads((out / "pruning_report.json").read_text())
    assert report["exactness"]["max_abs_logit_diff"] < 1e-4
    config = json.loads((out / "config.json").read_text())
    assert (config["mamba_n_groups"], config["mamba_n_heads"], config["mamba_expand"]) == (1, 4, 1)
    source = AutoModelForCausalLM.from_pretrained(family_models["granitemoehybrid"])
    pruned = AutoModelForCausalLM.from_pretrained(out)
    kept_layer = report["kept"]["layers"][0]  # a Mamba layer (layer 0 of the source is one)
    scores = torch.tensor(report["scores"]["mamba_head"][kept_layer]).view(2, 4).sum(-1)
    group = int(scores.argmax())
    assert report["kept"]["per_layer"][str(kept_layer)]["mamba_groups"] == [group]
    assert report["kept"]["per_layer"][str(kept_layer)]["mamba_heads"] == [4 * group + i for i in range(4)]
    n, p, heads = 8, 16, 8
    b_rows = slice(2 * heads * p + group * n, 2 * heads * p + (group + 1) * n)
    c_rows = slice(2 * heads * p + 2 * n + group * n, 2 * heads * p + 2 * n + (group + 1) * n)
    src = source.model.layers[kept_layer].mamba.in_proj.weight.detach()
    new = pruned.model.layers[0].mamba.in_proj.weight.detach()
    kept_hidden = torch.tensor(report["kept"]["hidden"]) if "hidden" in report["kept"] else torch.arange(64)
    torch.testing.assert_close(new[2 * 4 * p: 2 * 4 * p + n], src[b_rows][:, kept_hidden])
    torch.testing.assert_close(new[2 * 4 * p + n: 2 * 4 * p + 2 * n], src[c_rows][:, kept_hidden])
