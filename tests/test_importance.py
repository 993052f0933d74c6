"""The importance statistics against hand computations on captured activations (docs/ALGORITHMS.md §2)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_family_model

from regrow.compress.families import adapter_for
from regrow.compress.importance import ActivationStats, weight_magnitude


@pytest.mark.parametrize("reduction", ["l2", "mean"])
def test_activation_statistics_match_hand_computation(reduction):
    model = make_family_model("llama", 97).eval()
    adapter = adapter_for(model.config)
    shape = adapter.shape(model.config)
    layers = adapter.layers(model)
    seen = {"ctx": [], "mlp": [], "norm": [], "in": [], "out": []}
    handles = [
        layers[1].self_attn.o_proj.register_forward_pre_hook(lambda m, a: seen["ctx"].append(a[0].detach())),
        layers[1].mlp.down_proj.register_forward_pre_hook(lambda m, a: seen["mlp"].append(a[0].detach())),
        layers[2].register_forward_pre_hook(lambda m, a, k: seen["in"].append((a[0] if a else k["hidden_states"]).detach()),
                                            with_kwargs=True),
        layers[2].register_forward_hook(lambda m, a, o: seen["out"].append((o[0] if isinstance(o, tuple) else o).detach())),
    ]
    for layer in layers:
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            handles.append(norm.register_forward_hook(lambda m, a, o: seen["norm"].append(o.detach())))
    stats = ActivationStats(model, adapter, reduction)
    batches = [torch.randint(0, 97, (3, 10), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    with torch.no_grad():
        for ids in batches:
            model(ids)
    stats.remove()
    for h in handles:
        h.remove()

    def reduce(per_sample: torch.Tensor) -> torch.Tensor:  # [samples, units]
        return per_sample.pow(2).sum(0).sqrt() if reduction == "l2" else per_sample.mean(0)

    ctx = torch.cat(seen["ctx"])  # [6, 10, H * hd]
    heads = ctx.view(6, 10, shape.num_attention_heads, -1).norm(dim=-1).mean(1)
    scores = stats.scores()
    torch.testing.assert_close(scores.head[1].float(), reduce(heads))
    torch.testing.assert_close(scores.mlp[1].float(), reduce(torch.cat(seen["mlp"]).abs().mean(1)))
    norms = torch.stack([o.abs().mean(1) for o in seen["norm"]])  # [forwards x norms, batch, d]
    # hidden: the per-sample statistics of every norm output (all layers) are reduced together
    expected_hidden = (norms.pow(2).sum((0, 1)).sqrt() if reduction == "l2" else norms.sum((0, 1)) / 6)
    torch.testing.assert_close(scores.hidden.float(), expected_hidden)
    cos = torch.nn.functional.cosine_similarity(torch.cat(seen["in"]), torch.cat(seen["out"]), dim=-1)
    torch.testing.assert_close(scores.layer[2].float(), (1 - cos).mean())
    assert stats.samples == 6 and stats.tokens == 60


def test_weight_magnitude_of_a_head_and_a_channel():
    model = make_family_model("gpt_neox", 97)
    scores = weight_magnitude(model, adapter_for(model.config))
    attn = model.gpt_neox.layers[0].attention
    hd = 8
    qkv = attn.query_key_value
    head3 = (qkv.weight[3 * 3 * hd:4 * 3 * hd].pow(2).sum() + qkv.bias[3 * 3 * hd:4 * 3 * hd].pow(2).sum()
             + attn.dense.weight[:, 3 * hd:4 * hd].pow(2).sum())
    torch.testing.assert_close(scores.head[0, 3].float(), head3.sqrt().detach(), rtol=1e-5, atol=1e-6)
    mlp = model.gpt_neox.layers[1].mlp
    ch = (mlp.dense_h_to_4h.weight[5].pow(2).sum() + mlp.dense_h_to_4h.bias[5].pow(2)
          + mlp.dense_4h_to_h.weight[:, 5].pow(2).sum())
    torch.testing.assert_close(scores.mlp[1, 5].float(), ch.sqrt().detach(), rtol=1e-5, atol=1e-6)


def test_weight_magnitude_of_an_expert_and_its_channel():
    """An expert: its router row and all its weights; a channel of an expert: its gate and up rows
    and its down column, of that expert only."""
    model = make_family_model("mixtral", 97)
    scores = weight_magnitude(model, adapter_for(model.config))
    block = model.model.layers[2].mlp
    m = model.config.intermediate_size
    gate_up, down = block.experts.gate_up_proj[5], block.experts.down_proj[5]
    expert = block.gate.weight[5].pow(2).sum() + gate_up.pow(2).sum() + down.pow(2).sum()
    torch.testing.assert_close(scores.expert[2, 5].float(), expert.sqrt().detach(), rtol=1e-5, atol=1e-6)
    channel = gate_up[7].pow(2).sum() + gate_up[m + 7].pow(2).sum() + down[:, 7].pow(2).sum()
    torch.testing.assert_close(scores.expert_mlp[2, 5, 7].float(), channel.sqrt().detach(), rtol=1e-5, atol=1e-6)


def test_weight_magnitude_counts_a_gemma_norm_gain_as_one_plus_weight():
    model = make_family_model("gemma2", 97)
    scores = weight_magnitude(model, adapter_for(model.config))
    d = 9
    squares = 0.0
    for name, p in model.named_parameters():  # every tensor with a hidden axis: norms, rows of writers, columns of readers
        if name.endswith("norm.weight"):
            squares += (1 + p[d]).pow(2)
        elif name.endswith(("o_proj.weight", "down_proj.weight")):
            squares += p[d].pow(2).sum()
        elif p.dim() == 2:
            squares += p[:, d].pow(2).sum()
    torch.testing.assert_close(scores.hidden[d].float(), squares.sqrt().detach(), rtol=1e-5, atol=1e-5)
