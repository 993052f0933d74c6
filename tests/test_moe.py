"""Mixture-of-experts pruning (docs/ALGORITHMS.md §9): a masked expert never wins the top-k and the
kept gates are renormalised as the family does; expert scores (REAP, frequency, per-expert
channels) against sums written here from the weights; exports load and generate in plain
transformers with the target's config; active-expert FLOPs; the ratio split; bad input; a
study grid over the expert count."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import FAMILY_TARGETS, MOE_FAMILIES, make_family_model
from torch.nn import functional as F

from regrow.cli.main import main
from regrow.compress.families import adapter_for
from regrow.compress.importance import ActivationStats
from regrow.compress.masks import MaskHooks, Masks

EXPERTS_KEY = {"mixtral": "num_local_experts", "gpt_oss": "num_local_experts", "olmoe": "num_experts", "qwen3_moe": "num_experts", "qwen2_moe": "num_experts",
               "granitemoehybrid": "num_local_experts", "qwen3_next": "num_experts", "qwen3_5_moe": "num_experts",
               "lfm2_moe": "num_experts", "nemotron_h-moe": "n_routed_experts", "nemotron_h-nolatent": "n_routed_experts",
               "glm4_moe": "n_routed_experts", "deepseek_v3": "n_routed_experts", "deepseek_v2": "n_routed_experts"}
WIDTH_KEY = {"mixtral": "intermediate_size", "gpt_oss": "intermediate_size", "olmoe": "intermediate_size", "qwen3_moe": "moe_intermediate_size",
             "qwen2_moe": "moe_intermediate_size", "granitemoehybrid": "intermediate_size",
             "qwen3_next": "moe_intermediate_size", "qwen3_5_moe": "moe_intermediate_size",
             "lfm2_moe": "moe_intermediate_size", "nemotron_h-moe": "moe_intermediate_size",
             "nemotron_h-nolatent": "moe_intermediate_size", "glm4_moe": "moe_intermediate_size",
             "deepseek_v3": "moe_intermediate_size", "deepseek_v2": "moe_intermediate_size"}
DEEPSEEK_LAYOUT = ("glm4_moe", "deepseek_v3", "deepseek_v2")
SHARED_KEY = {"granitemoehybrid": "shared_intermediate_size", "nemotron_h-moe": "moe_shared_expert_intermediate_size",
              "nemotron_h-nolatent": "moe_shared_expert_intermediate_size"}


def moe_blocks(model):
    blocks = [getattr(layer, "mlp", None) or getattr(layer, "block_sparse_moe", None) or getattr(layer, "feed_forward", None)
              or getattr(layer, "mixer", None) for layer in model.model.layers]
    return [block for block in blocks if hasattr(block, "experts")]


def router(block):
    return block.gate if hasattr(block, "gate") else block.router  # Granite-4 calls it router


def record_routing(model):
    """Per MoE layer: the router's input and what the experts module is called with (indices, gates)."""
    seen, handles = [], []
    for block in moe_blocks(model):
        entry = {}
        seen.append(entry)
        handles.append(router(block).register_forward_pre_hook(lambda m, a, entry=entry: entry.update(x=a[0].detach().flatten(0, -2))))
        handles.append(block.experts.register_forward_pre_hook(
            lambda m, a, entry=entry: entry.update(index=a[1].detach(), weight=a[2].detach())))
    return seen, handles


def grouped_routing(probs: torch.Tensor, bias: torch.Tensor, groups: int, top_groups: int, k: int):
    """DeepSeek-V3's routing, written out: groups scored by their best two biased scores, the best
    `top_groups` groups kept, the top-k biased scores chosen in them; gates = unbiased scores."""
    choice = probs + bias
    per_group = choice.shape[-1] // groups
    group_scores = torch.stack([choice[:, g * per_group:(g + 1) * per_group].topk(2).values.sum(-1)
                                for g in range(groups)], dim=-1)
    allowed = torch.zeros_like(choice, dtype=torch.bool)
    for row, best in enumerate(group_scores.topk(top_groups).indices):
        for g in best.tolist():
            allowed[row, g * per_group:(g + 1) * per_group] = True
    chosen = choice.masked_fill(~allowed, -torch.inf).topk(k).indices
    return probs.gather(-1, chosen), chosen


def expert_output(experts, e: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(intermediate, output) of expert e, from its weights: down(silu(gate x) * up x)."""
    gate, up = (x @ experts.gate_up_proj[e].T).chunk(2, dim=-1)
    inner = F.silu(gate) * up
    return inner, inner @ experts.down_proj[e].T


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_masked_experts_are_never_routed_and_gates_renormalise_as_sliced(family):
    model = make_family_model(family, vocab_size=97).eval()
    adapter = adapter_for(model.config)
    source = adapter.shape(model.config)
    E, k = source.num_experts, source.num_experts_per_tok - 1 or 1
    g = torch.Generator().manual_seed(5)
    if source.n_group:  # group-limited routing: every group keeps the same number of experts (V2: one, else two)
        per_group, kept_per_group = E // source.n_group, 1 if family == "deepseek_v2" else 2
        keep = torch.stack([torch.cat([torch.randperm(per_group, generator=g) < kept_per_group for _ in range(source.n_group)])
                            for _ in range(source.num_hidden_layers)]).float()
    else:
        keep = torch.stack([torch.randperm(E, generator=g) < E // 2 + 1 for _ in range(source.num_hidden_layers)]).float()
    ids = torch.randint(0, 97, (2, 12), generator=g)
    hooks = MaskHooks(model, adapter)
    hooks.masks, hooks.final = Masks(expert=keep, experts_per_token=k), True
    seen, handles = record_routing(model)
    moe_layers = [i for i, moe in enumerate(adapter.moe_layers(model.config)) if moe]
    try:
        with torch.no_grad():
            model(ids)
    finally:
        hooks.remove()
        for h in handles:
            h.remove()
    renormalise = family in ("mixtral", "granitemoehybrid", "qwen3_5_moe") or getattr(model.config, "norm_topk_prob", False)
    assert len(seen) == len(moe_layers) > 0
    for layer, entry, block in zip(moe_layers, seen, moe_blocks(model)):
        kept = torch.nonzero(keep[layer]).flatten()
        assert set(entry["index"].flatten().tolist()) <= set(kept.tolist())  # a masked expert never wins
        logits = (entry["x"] @ router(block).weight.T)[:, kept].double()  # the sliced router
        if family == "deepseek_v2":  # softmax over the kept, groups scored by their best, no renormalisation
            probs = torch.softmax(logits, dim=-1)
            per = len(kept) // source.n_group
            group_best = probs.view(len(probs), source.n_group, per).max(-1).values
            allowed = torch.zeros_like(group_best, dtype=torch.bool).scatter_(1, group_best.topk(source.topk_group).indices, True)
            top, chosen = probs.masked_fill(~allowed.repeat_interleave(per, dim=1), 0.0).topk(k)
            top = top * model.config.routed_scaling_factor
        elif source.n_group:  # DeepSeek-V3's group-limited sigmoid routing, two experts per kept group
            probs = torch.sigmoid(logits)
            bias = router(block).e_score_correction_bias[kept].double()
            top, chosen = grouped_routing(probs, bias, source.n_group, source.topk_group, k)
            if model.config.norm_topk_prob:
                top = top / (top.sum(-1, keepdim=True) + 1e-20)
            top = top * model.config.routed_scaling_factor
        elif family == "gpt_oss":  # the k largest biased logits, softmaxed among themselves
            top, chosen = torch.topk(logits + router(block).bias[kept].double(), k, dim=-1)
            top = torch.softmax(top, dim=-1)
        elif family == "lfm2_moe":  # sigmoid scores, chosen by score + selection bias, scaled
            probs = torch.sigmoid(logits)
            chosen = torch.topk(probs + block.expert_bias[kept].double(), k, dim=-1).indices
            top = probs.gather(-1, chosen)
            top = top / (top.sum(-1, keepdim=True) + 1e-6) * model.config.routed_scaling_factor
        else:
            top, chosen = torch.topk(torch.softmax(logits, dim=-1), k, dim=-1)
        if renormalise and family != "lfm2_moe" and not source.n_group:
            top = top / top.sum(-1, keepdim=True)
        if source.n_group:  # transformers picks these top-k unsorted: compare in expert order
            order, resort = torch.sort(entry["index"], dim=-1), torch.sort(chosen, dim=-1)
            entry = {"index": order.values, "weight": entry["weight"].gather(-1, order.indices)}
            chosen, top = resort.values, top.gather(-1, resort.indices)
        assert torch.equal(entry["index"], kept[chosen])
        torch.testing.assert_close(entry["weight"].double(), top, rtol=1e-5, atol=1e-6)


def test_expert_scores_match_sums_over_routed_tokens():
    """REAP = mean over routed tokens of gate x ||expert output||; frequency = routed share;
    channel score = mean |intermediate| over routed tokens: from the plain model's routing."""
    model = make_family_model("mixtral", vocab_size=97).eval()
    adapter = adapter_for(model.config)
    ids = torch.randint(0, 97, (3, 10), generator=torch.Generator().manual_seed(6))
    seen, handles = record_routing(model)
    with torch.no_grad():
        model(ids)  # plain transformers: the routing to check against
    for h in handles:
        h.remove()
    stats = ActivationStats(model, adapter)
    with torch.no_grad():
        model(ids)
    stats.remove()
    reap, frequency = stats.scores("reap").expert, stats.scores("frequency").expert
    channels = stats.scores("reap").expert_mlp
    tokens = ids.numel()
    for layer, (entry, block) in enumerate(zip(seen, moe_blocks(model))):
        for e in range(model.config.num_local_experts):
            token, slot = torch.where(entry["index"] == e)
            assert frequency[layer, e] == pytest.approx(len(token) / tokens)
            if len(token) == 0:
                assert reap[layer, e] == 0
                continue
            with torch.no_grad():
                inner, out = expert_output(block.experts, e, entry["x"][token])
            expected = float((entry["weight"][token, slot] * out.norm(dim=-1)).mean())
            assert reap[layer, e] == pytest.approx(expected, rel=1e-5)
            torch.testing.assert_close(channels[layer, e].float(), inner.abs().mean(0), rtol=1e-5, atol=1e-7)
    assert stats.scores("random", seed=1).expert.shape == reap.shape


def test_active_flops_count_k_of_e_experts():
    from regrow.models.flops import model_shape

    model = make_family_model("qwen2_moe", vocab_size=97)
    c = model.config
    everything = sum(p.numel() for p in model.parameters()) - 2 * c.vocab_size * c.hidden_size
    moe_layers = sum(adapter_for(c).moe_layers(c))
    expert_params = moe_layers * c.num_experts * 3 * c.moe_intermediate_size * c.hidden_size
    active = everything - expert_params + expert_params * c.num_experts_per_tok / c.num_experts
    assert model_shape(model).nonembedding_params == round(active)


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_every_method_prunes_a_moe_exactly_and_the_export_generates(family, family_models, data_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    target = FAMILY_TARGETS[family]
    spec = tmp_path / "target.yaml"
    spec.write_text(yaml.safe_dump(target))
    for method in ("activation", "magnitude", "random", "sheared"):
        out = tmp_path / method
        assert main(["prune", "--model", str(family_models[family]), "--target", str(spec), "--method", method,
                     "--data", str(data_dir), "--out", str(out), "--seq-len", "16", "--batch-size", "4",
                     "--calibration-samples", "8", "--steps", "3", "--no-progress"]) == 0
        report = json.loads((out / "pruning_report.json").read_text())
        assert report["exactness"]["max_abs_logit_diff"] < 1e-4, (family, method)
        model = AutoModelForCausalLM.from_pretrained(out).eval()  # plain transformers
        config = model.config
        assert getattr(config, EXPERTS_KEY[family]) == target["num_experts"]
        assert config.num_experts_per_tok == target["num_experts_per_tok"]
        assert getattr(config, WIDTH_KEY[family]) == target["moe_intermediate_size"]
        if "shared_expert_intermediate_size" in target:
            if family in DEEPSEEK_LAYOUT:  # n_shared_experts shared experts of the expert width
                shared = config.n_shared_experts * config.moe_intermediate_size
            else:
                shared = getattr(config, SHARED_KEY.get(family, "shared_expert_intermediate_size"))
            assert shared == target["shared_expert_intermediate_size"]
        assert sum(p.numel() for p in model.parameters()) == report["target"]["parameters"]
        assert all(len(kept["experts"]) == target["num_experts"] for kept in report["kept"]["per_layer"].values())
        ids = torch.tensor([[1, 5, 9, 2]])
        cached = model.generate(ids, max_new_tokens=12, min_new_tokens=12, do_sample=False, use_cache=True)
        uncached = model.generate(ids, max_new_tokens=12, min_new_tokens=12, do_sample=False, use_cache=False)
        assert torch.equal(cached, uncached)
    assert json.loads((tmp_path / "activation" / "pruning_report.json").read_text())["method_details"][
        "expert_criterion"] == "reap"


def test_a_ratio_removes_experts_first_and_says_how_it_split(family_models, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prune", "--model", str(family_models["mixtral"]), "--target-ratio", "0.6", "--method", "random",
                 "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "pruning_report.json").read_text())
    shape = report["target"]["shape"]
    assert shape["num_experts"] < 8 and shape["num_experts"] >= 4  # experts go first, down to half
    assert report["ratio_split"].startswith(f"experts 8 -> {shape['num_experts']}")
    assert f"split: {report['ratio_split']}" in printed
    assert abs(report["target"]["fraction_kept"] - 0.6) < 0.05


BAD = [
    ("mixtral", {"num_experts": 9}, "target num_experts 9 is larger than the source's 8"),
    ("mixtral", {"num_experts": 1}, "num_experts_per_tok 2 is above the kept experts (1); allowed: 1..1"),
    ("llama", {"moe_intermediate_size": 16}, "moe_intermediate_size names a part the model does not have (no experts"),
    ("mixtral", {"shared_expert_intermediate_size": 8}, "shared_expert_intermediate_size names a part the model does not "
                                                         "have (no shared expert)"),
    ("olmoe", {"intermediate_size": 16, "moe_intermediate_size": 24}, "intermediate_size 16 and moe_intermediate_size 24 "
                                                                       "disagree"),
    ("qwen3_moe", {"num_experts_per_tok": 4}, "target num_experts_per_tok 4 is larger than the source's 3"),
    ("mixtral", {"moe_intermediate_size": 30}, "target moe_intermediate_size 30 would not run in transformers' grouped "
                                               "expert kernels (rows of 16 bytes); allowed: multiples of 8"),
]


@pytest.mark.parametrize("family,spec,message", BAD)
def test_bad_expert_targets_are_refused_in_one_line(family, spec, message, family_models, tmp_path, capsys):
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    assert main(["prune", "--model", str(family_models[family]), "--target", str(path), "--method", "random",
                 "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_a_method_that_only_removes_layers_cannot_prune_experts(family_models, tmp_path, capsys):
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump({"num_experts": 4}))
    assert main(["prune", "--model", str(family_models["mixtral"]), "--target", str(path), "--method", "depth",
                 "--out", str(tmp_path / "out"), "--no-progress", "--data", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert "removes whole layers only, but the target changes num_experts" in err and len(err.splitlines()) == 1


def test_the_olmoe_expert_width_may_be_named_as_its_config_does(family_models, tmp_path):
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump({"intermediate_size": 16}))  # OLMoE's config name for the expert width
    out = tmp_path / "out"
    assert main(["prune", "--model", str(family_models["olmoe"]), "--target", str(path), "--method", "magnitude",
                 "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "config.json").read_text())["intermediate_size"] == 16


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_loading_one_expert_tensor_at_a_time_equals_from_pretrained(family, family_models):
    """regrow reads a one-tensor-per-expert checkpoint itself (lower peak memory); the model is
    the one plain transformers loads: same tensors, attention and experts kernels, logits."""
    from transformers import AutoModelForCausalLM

    from regrow.models.hf import load_model

    ours, theirs = load_model(family_models[family]), AutoModelForCausalLM.from_pretrained(family_models[family])
    assert type(ours) is type(theirs) and not ours.training
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ours.config._attn_implementation == theirs.config._attn_implementation
    assert ours.config._experts_implementation == theirs.config._experts_implementation
    if ours.config.tie_word_embeddings:
        assert ours.get_output_embeddings().weight is ours.get_input_embeddings().weight
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, theirs(ids).logits)


def test_an_unknown_expert_criterion_is_refused(family_models, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["prune", "--model", str(family_models["mixtral"]), "--target-ratio", "0.5", "--method", "activation",
                 "--data", "unused", "--expert-criterion", "loudest", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "expert_criterion 'loudest' is not supported; allowed: reap, frequency, random" in err
    assert len(err.splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("streaming", [False, True])
def test_a_checkpoint_missing_an_experts_tensor_is_refused(streaming, family_models, tmp_path, capsys):
    """A per-expert checkpoint with one expert's tensor gone: one line naming the folder, exit 2."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "damaged"
    folder.mkdir()
    for f in family_models["mixtral"].iterdir():
        if f.suffix != ".safetensors":
            (folder / f.name).write_bytes(f.read_bytes())
    tensors = load_file(family_models["mixtral"] / "model.safetensors")
    gone = next(k for k in tensors if ".experts.3." in k)
    save_file({k: v for k, v in tensors.items() if k != gone}, folder / "model.safetensors")
    out = tmp_path / "out"
    assert main(["prune", "--model", str(folder), "--target-ratio", "0.5", "--method", "magnitude", "--out", str(out),
                 "--no-progress", *(["--streaming"] if streaming else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert str(folder) in err and "experts" in err and len(err.splitlines()) == 1, err
    assert not out.exists()
