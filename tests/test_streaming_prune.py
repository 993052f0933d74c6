"""`regrow prune --streaming`: the same pruned model as the in-memory path, from a sharded
checkpoint read lazily and calibrated one layer at a time; and its bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from conftest import FAMILY_CONFIGS, FAMILY_TARGETS, depth_target
from safetensors.torch import load_file

from regrow.cli.main import main

FAST = ["--seq-len", "32", "--batch-size", "4", "--calibration-samples", "12", "--no-progress"]
CASES = [("activation", []), ("depth", ["--depth-mode", "contiguous"]), ("depth", []), ("magnitude", [])]


@pytest.fixture(scope="module")
def sharded_models(family_models, tmp_path_factory):
    """Each family's model re-saved in several safetensors shards (with an index)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("sharded")
    folders = {}
    for family, folder in family_models.items():
        model = AutoModelForCausalLM.from_pretrained(folder)
        out = root / family
        model.save_pretrained(out, max_shard_size="100KB")
        AutoTokenizer.from_pretrained(folder).save_pretrained(out)
        assert (out / "model.safetensors.index.json").is_file()
        folders[family] = out
    return folders


def weights(folder):
    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(file))
    return out


@pytest.mark.parametrize("family", list(FAMILY_CONFIGS))
def test_streaming_equals_in_memory(family, sharded_models, data_dir, tmp_path):
    for method, extra in CASES:
        spec = depth_target(family) if method == "depth" else FAMILY_TARGETS[family]
        target = tmp_path / "target.yaml"
        target.write_text(yaml.safe_dump(spec))
        outs = {}
        for mode in ("memory", "streaming"):
            out = tmp_path / f"{method}-{'-'.join(extra)}-{mode}"
            args = ["prune", "--model", str(sharded_models[family]), "--target", str(target), "--method", method,
                    "--data", str(data_dir), "--out", str(out), *FAST, *extra]
            if mode == "streaming":
                # activation_memory_gb 0: calibration activations go through disk
                args += ["--streaming", "--activation-memory-gb", "0" if method == "activation" else "1"]
            assert main(args) == 0
            outs[mode] = out
        memory, streaming = (json.loads((outs[m] / "pruning_report.json").read_text()) for m in ("memory", "streaming"))
        assert streaming["kept"] == memory["kept"], (family, method)
        assert streaming["scores"].keys() == memory["scores"].keys()
        for kind, values in memory["scores"].items():
            np.testing.assert_allclose(streaming["scores"][kind], values, rtol=1e-5, atol=2e-6)
        assert streaming["target"] == memory["target"]
        # one pipeline: the same report fields, each with its exactness check (layer by layer when streaming)
        assert set(streaming) - {"streaming"} == set(memory)
        assert memory["exactness"]["checked"] and memory["exactness"]["max_abs_logit_diff"] < 1e-4
        check = streaming["exactness"]
        assert check["checked"] and check["max_abs_hidden_diff"] < 1e-4, (family, method, check)
        assert sorted(map(int, check["per_layer_max_abs_hidden_diff"])) == memory["kept"]["layers"]
        if method == "activation":
            assert streaming["streaming"]["activations"] == "disk"
            assert streaming["calibration_tokens"] == memory["calibration_tokens"] == 12 * 32
        a, b = weights(outs["memory"]), weights(outs["streaming"])
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].equal(b[key]), (family, method, key)
        assert not list(outs["streaming"].glob(".activations*"))


def test_streaming_check_finds_a_wrongly_written_layer(sharded_models, data_dir, tmp_path, monkeypatch):
    """The layer-by-layer check reads the written model back: a weight changed after slicing shows
    in that layer's difference and in no layer before it."""
    from safetensors.torch import save_file

    import regrow.compress.streaming as streaming

    write_layer = streaming.PrunedWriter.write_layer

    def write_then_damage(writer, index, tensors):
        write_layer(writer, index, tensors)
        if index != 1:
            return
        shard = writer.folder / writer.weight_map["model.layers.1.mlp.down_proj.weight"]
        written = load_file(shard)
        written["model.layers.1.mlp.down_proj.weight"][0, 0] += 0.5
        save_file(written, shard, metadata={"format": "pt"})

    monkeypatch.setattr(streaming.PrunedWriter, "write_layer", write_then_damage)
    out = tmp_path / "out"
    assert main(["prune", "--model", str(sharded_models["llama"]), "--target-ratio", "0.5", "--method", "magnitude",
                 "--out", str(out), "--streaming", *FAST]) == 0
    per_layer = json.loads((out / "pruning_report.json").read_text())["exactness"]["per_layer_max_abs_hidden_diff"]
    assert per_layer["0"] < 1e-5 and per_layer["1"] > 1e-3, per_layer


def test_streamed_model_loads_in_plain_transformers(sharded_models, data_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    assert main(["prune", "--model", str(sharded_models["llama"]), "--target-ratio", "0.5", "--method", "activation",
                 "--data", str(data_dir), "--out", str(out), "--streaming", *FAST]) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    report = json.loads((out / "pruning_report.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == report["target"]["parameters"]
    # a shard per layer, one each for the embedding and the (untied) head, one for the final norm
    assert report["streaming"]["written"]["files"] == report["target"]["shape"]["num_hidden_layers"] + 3


@pytest.mark.parametrize("method", ["sheared"])
def test_streaming_refuses_methods_that_need_gradients(method, sharded_models, data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["prune", "--model", str(sharded_models["llama"]), "--target-ratio", "0.5", "--method", method,
                 "--data", str(data_dir), "--out", str(out), "--streaming", *FAST])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"regrow: error: --streaming cannot run method {method!r}: it needs gradients through the whole model; "
                   "methods that can stream: activation, depth, magnitude, random")
    assert not out.exists()


def test_streaming_names_missing_and_corrupt_shards(sharded_models, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sharded_models["llama"], broken)
    shards = sorted(broken.glob("model-*.safetensors"))
    args = ["prune", "--model", str(broken), "--target-ratio", "0.5", "--method", "magnitude", "--out",
            str(tmp_path / "out"), "--streaming", "--no-progress"]
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) - 100])
    assert main(args) == 2
    assert f"corrupt or truncated shard files: {shards[1].name}" in capsys.readouterr().err
    shards[2].unlink()
    assert main(args) == 2
    assert f"missing shard files: {shards[2].name}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_streaming_reads_the_source_about_twice_at_most(sharded_models, data_dir, tmp_path):
    """Bytes read from the source (the report's count) against sums over its tensors' sizes: every
    layer once to score, each kept layer once more (only its kept rows when widths shrink), the
    embedding's calibration rows, the outer tensors once to write them."""
    from safetensors import safe_open

    source = sharded_models["llama"]
    sizes = {}
    for file in source.glob("*.safetensors"):
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():
                piece = handle.get_slice(key)
                shape = piece.get_shape()
                sizes[key] = 4 * int(np.prod(shape)) if shape else 4
    layer = {i: sum(v for k, v in sizes.items() if k.startswith(f"model.layers.{i}.")) for i in range(4)}
    outer = sum(v for k, v in sizes.items() if not k.startswith("model.layers."))
    row_bytes = 64 * 4  # an embedding row: hidden 64 floats
    tokens = 12 * 32 + 2 * 32  # calibration + the check's probe

    def bytes_read(target: dict, method: str) -> int:
        (tmp_path / "t.yaml").write_text(yaml.safe_dump(target))
        out = tmp_path / f"out-{method}"
        assert main(["prune", "--model", str(source), "--target", str(tmp_path / "t.yaml"), "--method", method,
                     "--data", str(data_dir), "--out", str(out), "--streaming", *FAST]) == 0
        return json.loads((out / "pruning_report.json").read_text())["streaming"]["source_bytes_read"]

    depth = bytes_read({"num_hidden_layers": 2}, "depth")
    floor = sum(layer.values()) + 2 * layer[0] + outer  # layers are alike: any two kept ones weigh 2 x layer 0
    assert floor <= depth <= floor + tokens * row_bytes
    target = FAMILY_TARGETS["llama"] | {"num_hidden_layers": 4}
    width = bytes_read(target, "activation")
    # the second pass reads the kept rows only: per layer (head_dim 8, input width 64 / MLP 96)
    h, heads, kv, m = (target[k] for k in ("hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size"))
    kept_rows = (heads * 8 + 2 * kv * 8 + h + 2 * m) * 64 + h * 96 + 2 * h  # q, k, v, o, gate, up | down | 2 norms
    floor = sum(layer.values()) + outer + 4 * 4 * kept_rows
    assert floor <= width <= floor + tokens * row_bytes  # < reading the kept layers whole (4 x layer 0 instead)


@pytest.mark.parametrize("family", ["gemma2", "gemma3"])
def test_bf16_gemma_embedding_scale_is_compensated_in_bf16(family, family_models, data_dir, tmp_path):
    """Gemma multiplies the embedding by sqrt(hidden) cast to the weights' dtype: a bf16 export
    pruned 64 -> 40 wide must give the source's embedding output on the kept channels, with no
    systematic scale error (bf16 rounds sqrt(40) = 6.3246 to 6.3125: 0.18% if the ratio were
    taken in fp32). Compared with plain transformers, both models loaded in bf16."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = tmp_path / "source"
    AutoModelForCausalLM.from_pretrained(family_models[family]).to(torch.bfloat16).save_pretrained(source)
    AutoTokenizer.from_pretrained(family_models[family]).save_pretrained(source)
    spec = tmp_path / "target.yaml"
    spec.write_text(yaml.safe_dump({"hidden_size": 40}))
    out = tmp_path / "out"
    assert main(["prune", "--model", str(source), "--target", str(spec), "--method", "magnitude", "--streaming",
                 "--out", str(out), "--no-progress"]) == 0
    kept = json.loads((out / "pruning_report.json").read_text())["kept"]["hidden"]
    ids = torch.arange(0, 500).reshape(5, 100)
    embed = {name: AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).get_input_embeddings()
             for name, folder in (("source", source), ("pruned", out))}
    with torch.no_grad():
        want = embed["source"](ids)[..., kept].double()
        got = embed["pruned"](ids).double()
    assert embed["pruned"].weight.dtype == torch.bfloat16
    nonzero = want.abs() > 1e-3
    ratio = (got[nonzero] / want[nonzero])
    assert abs(float(ratio.mean()) - 1) < 3e-4, float(ratio.mean())  # systematic part: none
    assert float((ratio - 1).abs().max()) < 0.01  # element-wise: bf16 rounding only


@pytest.mark.parametrize("mode", ["streaming", "in-memory", "sparse"])
def test_non_finite_source_weights_are_an_error_and_nothing_is_written(mode, family_models, data_dir, tmp_path, capsys):
    """Corrupt tensor bytes that decode to NaN used to give "max |diff| masked vs sliced nan" and
    a written model with exit 0."""
    import torch
    from safetensors.torch import load_file, save_file

    source = tmp_path / "source"
    import shutil

    shutil.copytree(family_models["llama"], source)
    weights = load_file(source / "model.safetensors")
    weights["model.layers.1.mlp.down_proj.weight"][3, :5] = float("nan")
    save_file(weights, str(source / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "out"
    how = {"streaming": ["--target-ratio", "0.5", "--method", "activation", "--streaming"],
           "in-memory": ["--target-ratio", "0.5", "--method", "activation"],
           "sparse": ["--sparsity", "0.5", "--method", "wanda"]}[mode]
    capsys.readouterr()
    assert main(["prune", "--model", str(source), *how, "--data", str(data_dir), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN or infinite" in err[0] and str(source) in err[0], err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["source"]
    assert torch.isnan(load_file(source / "model.safetensors")["model.layers.1.mlp.down_proj.weight"]).any()


@pytest.mark.parametrize("damage", ["missing_tensor", "wrong_shard"])
@pytest.mark.parametrize("streaming", [True, False])
def test_an_index_that_does_not_match_its_shards_is_named(damage, streaming, sharded_models, tmp_path, capsys):
    """model.safetensors.index.json naming a tensor no shard holds, or mapping one to the wrong
    shard: one line naming the tensor (a SafetensorError traceback under --streaming before)."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(sharded_models["llama"], folder)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    weight_map = index["weight_map"]
    name = "model.layers.2.mlp.down_proj.weight"
    if damage == "missing_tensor":
        weight_map["model.layers.9.mlp.down_proj.weight"] = weight_map[name]
        expect = "names tensors its shards lack: model.layers.9.mlp.down_proj.weight"
    else:
        other = next(f for f in sorted(set(weight_map.values())) if f != weight_map[name])
        expect = f"maps tensors to the wrong shard files: {name} to {other} (it is in {weight_map[name]})"
        weight_map[name] = other
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    out = tmp_path / "out"
    capsys.readouterr()
    argv = ["prune", "--model", str(folder), "--target-ratio", "0.5", "--method", "magnitude", "--out", str(out),
            "--no-progress", *(["--streaming"] if streaming else [])]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert not out.exists()
