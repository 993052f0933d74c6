"""Bad input to `regrow prune`: one line naming the problem, exit code 2, nothing written."""

from __future__ import annotations

import re

import pytest
import yaml

from regrow.cli.main import main


def run_error(capsys, argv, out):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("regrow: error: ") and "\n" not in err, err
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []
    return err


def spec(tmp_path, data: dict) -> str:
    path = tmp_path / "target.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    "family,target,message",
    [
        ("llama", {"intermediate_size": 200}, r"target intermediate_size 200 is larger than the source's 96; pruning can only shrink \(allowed: 1..96\)"),
        ("llama", {"num_attention_heads": 6, "num_key_value_heads": 4}, r"num_attention_heads 6 is not divisible by num_key_value_heads 4"),
        ("llama", {"num_attention_heads": 8, "num_key_value_heads": 2}, r"4 query heads per key/value head but the source only 2"),
        ("gpt_neox", {"hidden_size": 48}, r"gpt_neox derives head_dim = hidden_size / num_attention_heads, .* allowed: hidden_size = num_attention_heads x 8 \(= 64\)"),
        ("bloom", {"num_attention_heads": 4, "intermediate_size": 100}, r"bloom fixes intermediate_size = 4 x hidden_size; allowed: intermediate_size 128"),
        ("gpt_neox", {"num_attention_heads": 4, "num_key_value_heads": 2}, r"gpt_neox has no grouped-query attention"),
        ("llama", {"hidden_size": 44}, r"the HF config class rejects the target shape .*: The hidden size \(44\) is not a multiple of the number of attention heads \(8\)"),
        ("llama", {"num_hidden_layers": 0}, r"target num_hidden_layers is 0; it must be >= 1"),
        ("qwen2", {"num_attention_heads": 0}, r"target num_attention_heads is 0; it must be >= 1"),
        ("llama", {"num_layers": 2}, r"unknown key\(s\) num_layers; allowed: num_hidden_layers, hidden_size"),
        ("llama", {"hidden_size": 40.5}, r"hidden_size is 40.5; it must be a whole number"),
        # OLMoE sizes q_norm by hidden_size: heads without hidden (and the reverse) cannot load
        ("olmoe", {"num_attention_heads": 4, "num_key_value_heads": 4, "hidden_size": 64}, r"olmoe derives head_dim = hidden_size / num_attention_heads, .* allowed: hidden_size = num_attention_heads x 8 \(= 32\)"),
        ("olmoe", {"hidden_size": 48}, r"olmoe derives head_dim .* \(= 64\)"),
        ("phi3", {"hidden_size": 48}, r"phi3 derives head_dim = hidden_size / num_attention_heads, .* allowed: hidden_size = num_attention_heads x 8 \(= 64\)"),
        ("phi3", {"num_attention_heads": 6, "num_key_value_heads": 4}, r"num_attention_heads 6 is not divisible by num_key_value_heads 4"),
        ("qwen3", {"num_attention_heads": 8, "num_key_value_heads": 2}, r"4 query heads per key/value head but the source only 2"),
        ("gemma2", {"intermediate_size": 200}, r"target intermediate_size 200 is larger than the source's 96"),
        ("gemma3", {"num_key_value_heads": 5}, r"target num_key_value_heads 5 is larger than the source's 4"),
        # head_dim is explicit, yet Gemma's config class still wants hidden_size divisible by the heads
        ("gemma3", {"num_attention_heads": 6, "num_key_value_heads": 3},
         r"the HF config class rejects the target shape .*: The hidden size \(64\) is not a multiple of the number of attention heads \(6\)"),
    ],
)
def test_bad_targets(family, target, message, family_models, data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    err = run_error(capsys, ["prune", "--model", str(family_models[family]), "--target", spec(tmp_path, target),
                             "--method", "magnitude", "--out", str(out)], out)
    assert re.search(message, err), err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--method", "obs"], r"unknown method 'obs'; allowed: activation, depth, magnitude, magnitude-sparse, random, "
                              r"random-sparse, sheared, sparsegpt, wanda"),
        (["--method", "magnitude", "--reinit", "lottery"], r"unknown reinit 'lottery'; allowed: none, shrink-perturb, fire, random, rewind"),
        (["--method", "depth"], r"method 'depth' removes whole layers only, but the target changes hidden_size"),
        (["--method", "activation", "--no-data"], r"method 'activation' needs calibration data: pass --data DATA_DIR"),
        (["--method", "magnitude", "--set", "batch_reduction=max"], r"batch_reduction 'max' is not supported; allowed: l2, mean"),
        (["--method", "activation", "--mixture", "prose=1", "german=1"], r"names domain 'german', which the data folder lacks"),
        (["--method", "activation", "--seq-len", "512"], r"--seq-len 512 exceeds the model's 128 positions"),
        (["--method", "magnitude", "--set", "sheared.temprature=1"], r"sheared.temprature"),
    ],
)
def test_bad_options(extra, message, family_models, data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    data = [] if "--no-data" in extra else ["--data", str(data_dir)]
    extra = [e for e in extra if e != "--no-data"]
    argv = ["prune", "--model", str(family_models["llama"]), "--target", spec(tmp_path, {"hidden_size": 32}),
            *data, "--out", str(out), *extra]
    err = run_error(capsys, argv, out)
    assert re.search(message, err), err


def test_target_ratio_out_of_range_and_both_targets(family_models, tmp_path, capsys):
    out = tmp_path / "out"
    model = str(family_models["llama"])
    err = run_error(capsys, ["prune", "--model", model, "--target-ratio", "1.5", "--method", "random", "--out", str(out)], out)
    assert "--target-ratio is 1.5; allowed: 0 < R <= 1" in err
    err = run_error(capsys, ["prune", "--model", model, "--method", "random", "--out", str(out)], out)
    assert "give exactly one of --target SPEC and --target-ratio R" in err


def test_unsupported_family(tokenizer_dir, tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=512, n_embd=32, n_layer=2, n_head=4)).save_pretrained(folder)
    capsys.readouterr()  # transformers' own progress bar while saving the test's model
    out = tmp_path / "out"
    err = run_error(capsys, ["prune", "--model", str(folder), "--target-ratio", "0.5", "--method", "random", "--out", str(out)], out)
    assert ("model_type 'gpt2' is not supported for pruning; supported: bloom, deepseek_v2, deepseek_v3, falcon_h1, gemma2, gemma3_text, glm4_moe, gpt_neox, "
            "gpt_oss, granite, granitemoehybrid, lfm2, lfm2_moe, llama, mistral, mixtral, nemotron_h, olmo, olmo2, olmo3, olmo_hybrid, olmoe, phi3, qwen2, "
            "qwen2_moe, qwen3, qwen3_5_moe_text, qwen3_5_text, qwen3_moe, qwen3_next, smollm3") in err


def test_calibration_data_of_another_vocabulary(family_models, corpus, tmp_path, capsys):
    other_tok, other_data = tmp_path / "tok", tmp_path / "data"
    assert main(["tokenizer", "train", str(corpus["code"]), "--vocab-size", "300", "--out", str(other_tok)]) == 0
    assert main(["data", "prepare", str(corpus["code"]), "--domain", "code", "--tokenizer", str(other_tok),
                 "--out", str(other_data), "--val-fraction", "0.1", "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    err = run_error(capsys, ["prune", "--model", str(family_models["llama"]), "--target-ratio", "0.5", "--method", "activation",
                             "--data", str(other_data), "--out", str(out)], out)
    assert "domain 'code'" in err and "another vocabulary than the model's tokenizer" in err


def test_out_folder_must_be_new(family_models, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["prune", "--model", str(family_models["llama"]), "--target-ratio", "0.5", "--method", "random", "--out", str(out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("method", ["activation", "random", "magnitude-sparse"])
def test_a_damaged_tokenizer_is_named_not_dropped(method, family_models, data_dir, tmp_path, capsys):
    """Tokenizer files that do not load are an error (they were taken for "no tokenizer": the
    export lost its tokenizer and the calibration check fell back to vocabulary sizes)."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(family_models["llama"], model)
    (model / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE", "vocab": ')
    capsys.readouterr()
    out = tmp_path / "out"
    ratio = ["--sparsity", "0.5"] if method.endswith("-sparse") else ["--target-ratio", "0.5"]
    err = run_error(capsys, ["prune", "--model", str(model), *ratio, "--method", method, "--data", str(data_dir),
                             "--seq-len", "32", "--out", str(out)], out)
    assert f"the tokenizer in {str(model)!r}" in err and "tokenizer.json" in err and "could not be loaded" in err
    err = run_error(capsys, ["eval", "--model", str(model), "--data", str(data_dir), "--seq-len", "32"], tmp_path / "none")
    assert "tokenizer.json" in err and "could not be loaded" in err
    # a folder with no tokenizer files at all is a model without a tokenizer: fine
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (model / name).unlink(missing_ok=True)
    assert main(["prune", "--model", str(model), *ratio, "--method", method, "--data", str(data_dir), "--seq-len", "32",
                 "--out", str(out)]) == 0


def _one_kind_targets(config: dict) -> dict[str, dict]:
    """Targets that prune one kind of unit only (the combinations a family's HF class may not accept)."""
    heads = config.get("num_attention_heads") or config["n_head"]
    kv = config.get("num_key_value_heads") or heads
    half = heads // 2
    targets = {"layers": {"num_hidden_layers": 3}, "hidden": {"hidden_size": 48},
               "heads": {"num_attention_heads": half, "num_key_value_heads": kv if half % kv == 0 else half // 2 or 1}}
    if kv > 1:
        targets["kv"] = {"num_key_value_heads": kv // 2}
    width = "moe_intermediate_size" if "moe_intermediate_size" in config or "num_local_experts" in config or \
        "num_experts" in config else "intermediate_size"
    targets["mlp"] = {width: 24 if width == "moe_intermediate_size" else 64}
    return targets


@pytest.mark.parametrize("family", sorted(__import__("conftest").FAMILY_CONFIGS))
def test_every_family_checks_its_rules_before_any_work(family, family_models, tmp_path, capsys):
    """For every family and every single kind of unit pruned alone, regrow either writes a model
    that plain transformers loads and runs, or refuses the target with one line and exit 2
    before anything is written; never a crash after the work (OLMoE used to prune its heads
    and then fail in load_state_dict)."""
    import json

    import torch
    from transformers import AutoModelForCausalLM

    outcomes = {}
    config = json.loads((family_models[family] / "config.json").read_text())
    for kind, target in _one_kind_targets(config).items():
        out = tmp_path / kind
        capsys.readouterr()
        rc = main(["prune", "--model", str(family_models[family]), "--target", spec(tmp_path, target), "--method",
                   "random", "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert rc in (0, 2), (kind, rc, err)
        if rc == 2:
            assert err.startswith("regrow: error: ") and "\n" not in err and not out.exists(), (kind, err)
        else:
            model = AutoModelForCausalLM.from_pretrained(out)
            assert torch.isfinite(model(input_ids=torch.tensor([[1, 2, 3, 4]])).logits).all()
        outcomes[kind] = rc
    assert outcomes["layers"] == 0, outcomes


@pytest.mark.parametrize("family, extra, message", [
    ("llama", ["--method", "activation", "--expert-criterion", "frequency", "--target-ratio", "0.5"],
     r"--expert-criterion: .* is a dense model \(no experts to score\)"),
    ("mixtral", ["--method", "magnitude", "--expert-criterion", "frequency", "--target-ratio", "0.5"],
     r"--expert-criterion: method 'magnitude' does not use it \(only activation does\)"),
    ("mixtral", ["--method", "wanda", "--sparsity", "0.5", "--set", "expert_criterion=random"],
     r"--expert-criterion: method 'wanda' does not use it"),
    ("mixtral", ["--method", "activation", "--expert-criterion", "reap", "--target", {"hidden_size": 48}],
     r"--expert-criterion: the target keeps all 8 experts, so no expert is chosen"),
    ("llama", ["--method", "activation", "--activation-memory-gb", "2", "--target-ratio", "0.5"],
     r"--activation-memory-gb bounds the calibration activations of --streaming only"),
])
def test_options_without_effect_are_refused(family, extra, message, family_models, data_dir, tmp_path, capsys):
    """An option that changes nothing in the given combination is refused, named (it was accepted
    silently, so a user believed it had been applied)."""
    out = tmp_path / "out"
    extra = [spec(tmp_path, e) if isinstance(e, dict) else e for e in extra]
    argv = ["prune", "--model", str(family_models[family]), "--data", str(data_dir), "--out", str(out),
            "--seq-len", "32", *extra]
    err = run_error(capsys, argv, out)
    assert re.search(message, err), err
