"""Bad input to `regrow train`: recipe values, recipe files, model and tokenizer folders, out_dir."""

from __future__ import annotations

import copy

import pytest
from badinput import assert_refused, run_cli, write_yaml
from conftest import TINY_LLAMA, recipe

NAN, INF = float("nan"), float("inf")
DELETE = object()


def mutate(base: dict, changes: dict) -> dict:
    data = copy.deepcopy(base)
    for dotted, value in changes.items():
        node = data
        keys = dotted.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return data


# (changes to the tiny recipe, text the one error line must hold)
RECIPE_CASES = {
    # schedule: a typed union selected by name, every key typed and checked
    "lr_max_nan": ({"schedule.lr_max": NAN}, "'schedule.lr_max' is nan; it must be a finite number"),
    "lr_max_inf": ({"schedule.lr_max": INF}, "'schedule.lr_max' is inf"),
    "lr_max_neg_inf": ({"schedule.lr_max": -INF}, "'schedule.lr_max' is -inf"),
    "lr_max_zero": ({"schedule.lr_max": 0.0}, "schedule.lr_max is 0.0; it must be > 0"),
    "lr_max_negative": ({"schedule.lr_max": -1e-3}, "schedule.lr_max is -0.001"),
    "lr_max_text": ({"schedule.lr_max": "fast"}, "'schedule.lr_max' must be a number"),
    "lr_min_above_max": ({"schedule.lr_min": 1.0}, "schedule.lr_min 1.0 must be within [0, lr_max"),
    "lr_min_nan": ({"schedule.lr_min": NAN}, "'schedule.lr_min' is nan"),
    "warmup_negative": ({"schedule.warmup_steps": -1}, "schedule.warmup_steps is -1"),
    "warmup_too_long": ({"schedule.warmup_steps": 6}, "schedule.warmup_steps 6 must be < total_steps 6"),
    "total_steps_zero": ({"schedule.total_steps": 0}, "schedule.total_steps is 0"),
    "schedule_unknown": ({"schedule.name": "triangle"}, "unknown schedule 'triangle'; allowed: constant, cosine"),
    "schedule_no_name": ({"schedule.name": DELETE}, "unknown schedule None; allowed"),
    "schedule_not_mapping": ({"schedule": "cosine"}, "schedule must be a mapping with a `name`"),
    "schedule_key_of_other": ({"schedule.decay_fraction": 0.2}, "unknown config key 'schedule.decay_fraction'"),
    "wsd_typo_key": ({"schedule": {"name": "wsd", "decay_shap": "sqrt"}}, "unknown config key 'schedule.decay_shap'"),
    "wsd_fraction": ({"schedule": {"name": "wsd", "decay_fraction": 1.5}}, "schedule.decay_fraction 1.5 must be within [0, 1]"),
    "wsd_shape": ({"schedule": {"name": "wsd", "decay_shape": "zigzag"}}, "unknown schedule.decay_shape 'zigzag'"),
    "wsd_half_life": ({"schedule": {"name": "wsd", "decay_shape": "exp", "half_life_steps": 0}}, "half_life_steps 0.0 must be > 0"),
    "infinite_lr_const": ({"schedule": {"name": "infinite", "lr_const": 1.0}}, "schedule.lr_const 1.0 must be within"),
    "infinite_cooldown": ({"schedule": {"name": "infinite", "cooldown_steps": -2}}, "cooldown_steps and schedule.anneal_steps must be >= 0"),
    "infinite_alpha": ({"schedule": {"name": "infinite", "alpha": 0}}, "schedule.alpha 0.0 must be > 0"),
    "infinite_shape": ({"schedule": {"name": "infinite", "cooldown_shape": "linear"}}, "unknown schedule.cooldown_shape"),
    "infinite_overlap": ({"schedule": {"name": "infinite", "cooldown_steps": 5, "anneal_steps": 5}}, "schedule phases overlap"),
    "infinite_anneal_zero_min": ({"schedule": {"name": "infinite", "lr_min": 0.0, "lr_const": 1e-4, "anneal_steps": 2}}, "lr_min must be > 0"),
    # optimizer and loop
    "weight_decay_nan": ({"train.weight_decay": NAN}, "'train.weight_decay' is nan"),
    "weight_decay_negative": ({"train.weight_decay": -0.1}, "train.weight_decay is -0.1; it must be >= 0"),
    "grad_clip_nan": ({"train.grad_clip": NAN}, "'train.grad_clip' is nan"),
    "grad_clip_zero": ({"train.grad_clip": 0}, "train.grad_clip is 0.0; it must be > 0, or null"),
    "grad_clip_negative": ({"train.grad_clip": -1}, "train.grad_clip is -1.0"),
    "grad_clip_inf": ({"train.grad_clip": INF}, "'train.grad_clip' is inf"),
    "betas_one": ({"train.betas": [1.0, 0.95]}, "train.betas[0] is 1.0; allowed: 0 <= beta < 1"),
    "betas_negative": ({"train.betas": [0.9, -0.1]}, "train.betas[1] is -0.1"),
    "betas_one_value": ({"train.betas": [0.9]}, "'train.betas' needs 2 values"),
    "betas_text": ({"train.betas": ["a", 0.9]}, "'train.betas' must be a number"),
    "betas_nan": ({"train.betas": [NAN, 0.9]}, "'train.betas' is nan"),
    "betas_scalar": ({"train.betas": 0.9}, "'train.betas' must be a list"),
    "eps_zero": ({"train.eps": 0}, "train.eps is 0.0; it must be > 0"),
    "eps_nan": ({"train.eps": NAN}, "'train.eps' is nan"),
    "steps_zero": ({"train.steps": 0}, "train.steps is 0; it must be >= 1"),
    "steps_negative": ({"train.steps": -5}, "train.steps is -5"),
    "steps_fraction": ({"train.steps": 1.5}, "'train.steps' must be an integer"),
    "steps_text": ({"train.steps": "many"}, "'train.steps' must be an integer"),
    "steps_bool": ({"train.steps": True}, "'train.steps' must be an integer"),
    "batch_size_zero": ({"train.batch_size": 0}, "train.batch_size is 0"),
    "grad_accum_zero": ({"train.grad_accum": 0}, "train.grad_accum is 0"),
    "eval_every_negative": ({"train.eval_every": -1}, "train.eval_every is -1"),
    "checkpoint_every_negative": ({"train.checkpoint_every": -3}, "train.checkpoint_every is -3"),
    "keep_checkpoints_zero": ({"train.keep_checkpoints": 0}, "train.keep_checkpoints is 0"),
    "log_every_zero": ({"train.log_every": 0}, "train.log_every is 0"),
    "eval_tokens_zero": ({"train.eval_tokens": 0}, "train.eval_tokens is 0"),
    "precision": ({"train.precision": "fp8"}, "train.precision 'fp8' is not supported; allowed: fp32, bf16"),
    "device": ({"train.device": "tpu"}, "train.device 'tpu' is not supported; allowed: auto, cpu, cuda"),
    "save_at_zero": ({"train.save_at_tokens": [0]}, "train.save_at_tokens has 0"),
    "save_at_negative": ({"train.save_at_tokens": [100, -5]}, "train.save_at_tokens has -5"),
    "compile_text": ({"train.compile": "yes"}, "'train.compile' must be true or false"),
    "train_unknown_key": ({"train.stepz": 3}, "unknown config key 'train.stepz'"),
    "train_not_mapping": ({"train": [1, 2]}, "train must be a mapping"),
    "distill_weight": ({"train.distill": {"teacher": "t", "weight": 2.0}}, "train.distill.weight is 2.0; allowed: 0..1"),
    "distill_temperature": ({"train.distill": {"teacher": "t", "temperature": 0}}, "train.distill.temperature is 0.0"),
    "distill_no_teacher": ({"train.distill": {"weight": 0.5}}, "train.distill.teacher is not set"),
    "distill_weight_nan": ({"train.distill": {"teacher": "t", "weight": NAN}}, "'train.distill.weight' is nan"),
    # data
    "seq_len_zero": ({"data.seq_len": 0}, "data.seq_len is 0"),
    "seq_len_too_long": ({"data.seq_len": 4096}, "data.seq_len 4096 exceeds the model's 64 positions"),
    "data_path_empty": ({"data.path": ""}, "data.path is not set"),
    "data_path_missing": ({"data.path": "/nonexistent/data"}, "data folder '/nonexistent/data' is not a folder"),
    "mixture_empty": ({"data.mixture": {}}, "data.mixture is empty"),
    "mixture_negative": ({"data.mixture": {"prose": -1.0, "code": 1.0}}, "data.mixture weight of 'prose' is -1.0"),
    "mixture_nan": ({"data.mixture": {"prose": NAN, "code": 1.0}}, "'data.mixture.prose' is nan"),
    "mixture_inf": ({"data.mixture": {"prose": INF}}, "'data.mixture.prose' is inf"),
    "mixture_zero": ({"data.mixture": {"prose": 0.0, "code": 0.0}}, "data.mixture weights are all zero"),
    "mixture_text": ({"data.mixture": {"prose": "half"}}, "'data.mixture.prose' must be a number"),
    "mixture_unknown_domain": ({"data.mixture": {"german": 1.0}}, "data.mixture names domain 'german', which the data folder lacks"),
    "new_domains_unknown": ({"data.new_domains": ["german"]}, "data.new_domains names 'german', which data.mixture lacks"),
    "new_domains_not_list": ({"data.new_domains": 3}, "'data.new_domains' must be a list"),
    "eval_domains_unknown": ({"train.eval_domains": ["german"]}, "domain 'german' is not in data folder"),
    "dynamic_interval": ({"data.dynamic": {"interval": 0}}, "data.dynamic.interval is 0"),
    "dynamic_eta": ({"data.dynamic": {"eta": 0}}, "data.dynamic.eta is 0.0"),
    "dynamic_eta_nan": ({"data.dynamic": {"eta": NAN}}, "'data.dynamic.eta' is nan"),
    "dynamic_smoothing": ({"data.dynamic": {"smoothing": 1.0}}, "data.dynamic.smoothing is 1.0"),
    "dynamic_eval_tokens": ({"data.dynamic": {"eval_tokens": 0}}, "data.dynamic.eval_tokens is 0"),
    "dynamic_reference_word": ({"data.dynamic": {"reference": "sourc"}}, "data.dynamic.reference 'sourc' is not supported"),
    "dynamic_reference_missing": ({"data.dynamic": {"reference": {"prose": 2.0}}}, "data.dynamic.reference lacks domain(s) code"),
    "dynamic_reference_nan": ({"data.dynamic": {"reference": {"prose": NAN, "code": 2.0}}}, "'data.dynamic.reference.prose' is nan"),
    "dynamic_reference_text": ({"data.dynamic": {"reference": {"prose": "two", "code": 2.0}}},
                               "data.dynamic.reference of 'prose' is 'two', not a number"),
    "dynamic_reference_list": ({"data.dynamic": {"reference": {"prose": [2.0], "code": 2.0}}},
                               "data.dynamic.reference of 'prose' is [2.0], not a number"),
    "dynamic_reference_bool": ({"data.dynamic": {"reference": {"prose": True, "code": 2.0}}},
                               "data.dynamic.reference of 'prose' is True, not a finite number"),
    "dynamic_reference_fit": ({"data.dynamic": {"reference": {"fit": [{"params": 1, "losses": {}}]}}}, "needs at least 3 model sizes"),
    "dynamic_unknown_key": ({"data.dynamic": {"intervall": 5}}, "unknown config key 'data.dynamic.intervall'"),
    # model
    "model_none": ({"model": {}}, "set exactly one of model.init"),
    "model_both": ({"model.init": "somewhere"}, "set exactly one of model.init"),
    "model_hidden_zero": ({"model.config.hidden_size": 0}, "model.config.hidden_size is 0; it must be a positive integer"),
    "model_layers_negative": ({"model.config.num_hidden_layers": -1}, "model.config.num_hidden_layers is -1"),
    "model_heads_fraction": ({"model.config.num_attention_heads": 2.5}, "model.config.num_attention_heads is 2.5"),
    "model_vocab_zero": ({"model.config.vocab_size": 0}, "model.config.vocab_size is 0"),
    "model_no_type": ({"model.config.model_type": DELETE}, "model.config needs a model_type"),
    "model_type_unknown": ({"model.config.model_type": "llamax"}, "model.config is not a valid 'llamax' config"),
    "model_hidden_not_heads": ({"model.config.hidden_size": 65, "model.config.num_attention_heads": 8},
                               "The hidden size (65) is not a multiple of the number of attention heads (8)"),
    "model_config_nan": ({"model.config.rms_norm_eps": NAN}, "'model.config.rms_norm_eps' is nan"),
    "model_unknown_key": ({"model.path": "x"}, "unknown config key 'model.path'"),
    "tokenizer_missing": ({"tokenizer": "/nonexistent/tok"}, "tokenizer '/nonexistent/tok' is not a folder"),
    "config_without_tokenizer": ({"tokenizer": None}, "model.config builds a new model, which needs a tokenizer"),
    "seed_text": ({"seed": "x"}, "'seed' must be an integer"),
    "top_unknown_key": ({"epochs": 3}, "unknown config key 'epochs'"),
}


@pytest.mark.parametrize("case", list(RECIPE_CASES), ids=list(RECIPE_CASES))
def test_bad_recipe_values(case, tokenizer_dir, data_dir, tmp_path, capsys):
    changes, expect = RECIPE_CASES[case]
    base = recipe(tokenizer_dir, data_dir, tmp_path / "run")
    path = write_yaml(tmp_path / "recipe.yaml", mutate(base, changes))
    assert_refused(capsys, ["train", path], expect, [tmp_path, data_dir, tokenizer_dir])


# recipe files that are damaged, ambiguous or not files at all: (bytes or None for a folder, expected text)
RECIPE_FILES = {
    "duplicate_top_key": (b"seed: 1\nseed: 2\n", "duplicated key 'seed' (line 2)"),
    "duplicate_nested_key": (b"train:\n  steps: 3\n  steps: 4\n", "duplicated key 'steps' (line 3)"),
    "duplicate_flow_key": (b"schedule: {name: cosine, name: wsd}\n", "duplicated key 'name'"),
    "binary": (b"\x00\x01\x02PK\x03\x04" * 20, "is a binary file; a UTF-8 text file is expected"),
    "latin1": ("train:\n  steps: 3 # r\xe9glage\n".encode("latin-1"), "is not UTF-8 text"),
    "invalid_yaml": (b"train: [1, 2\n", "is not valid YAML"),
    "list_not_mapping": (b"- 1\n- 2\n", "must hold a mapping, got list"),
    "python_tag": (b"seed: !!python/object/apply:os.getcwd []\n", "is not valid YAML"),
    "folder": (None, "is a folder; a file is expected here"),
}


@pytest.mark.parametrize("case", list(RECIPE_FILES), ids=list(RECIPE_FILES))
def test_bad_recipe_files(case, tmp_path, capsys):
    content, expect = RECIPE_FILES[case]
    path = tmp_path / "recipe.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert_refused(capsys, ["train", path], expect, [tmp_path])


def test_missing_recipe(tmp_path, capsys):
    assert_refused(capsys, ["train", tmp_path / "absent.yaml"], "does not exist", [tmp_path])


SET_CASES = {
    "unknown_key": (["--set", "train.stepz=1"], "unknown --set key 'train.stepz'"),
    "no_equals": (["--set", "train.steps"], "--set expects key=value"),
    "nan_value": (["--set", "schedule.lr_max=.nan"], "'schedule.lr_max' is nan"),
    "inf_value": (["--set", "train.weight_decay=.inf"], "'train.weight_decay' is inf"),
    "schedule_key_no_kind": (["--set", "schedule.decay_shap=sqrt"], "no schedule kind has it"),
    "grad_clip_off_is_null_not_zero": (["--set", "train.grad_clip=0"], "or null to turn clipping off"),
    "resume_without_checkpoint": (["--resume"], "has no checkpoint to resume from"),
}


@pytest.mark.parametrize("case", list(SET_CASES), ids=list(SET_CASES))
def test_bad_command_line(case, tokenizer_dir, data_dir, tmp_path, capsys):
    extra, expect = SET_CASES[case]
    path = write_yaml(tmp_path / "recipe.yaml", recipe(tokenizer_dir, data_dir, tmp_path / "run"))
    assert_refused(capsys, ["train", path, *extra], expect, [tmp_path, data_dir, tokenizer_dir])


def test_a_diverging_run_stops_at_the_first_non_finite_loss(tokenizer_dir, data_dir, tmp_path, capsys):
    """A finite but absurd learning rate: the first NaN loss stops the run with one line (exit 2),
    instead of training on and writing a NaN model and summary."""
    data = recipe(tokenizer_dir, data_dir, tmp_path / "run")
    data["schedule"] = {"name": "constant", "lr_max": 1e30}
    data["train"].update(grad_clip=None, steps=20)
    path = write_yaml(tmp_path / "recipe.yaml", data)
    capsys.readouterr()
    assert run_cli(["train", path]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "the run diverged" in err and "is nan at step" in err, err
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "summary.json").exists()


def _model_folder(tmp_path, tokenizer_dir, damage):
    """A tiny saved model, damaged by `damage(folder)`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from regrow.data.tokenizer import load_tokenizer, vocab_size_of

    tokenizer = load_tokenizer(tokenizer_dir)
    fields = dict(TINY_LLAMA)
    config = AutoConfig.for_model(fields.pop("model_type"), vocab_size=vocab_size_of(tokenizer), **fields)
    torch.manual_seed(0)
    folder = tmp_path / "model"
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    damage(folder)
    return folder


def _truncate(name, keep=0.5):
    def damage(folder):
        path = folder / name
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return damage


def _replace(name, content: bytes):
    def damage(folder):
        (folder / name).write_bytes(content)
    return damage


def _edit_config(**changes):
    def damage(folder):
        import json

        config = json.loads((folder / "config.json").read_text())
        config.update(changes)
        (folder / "config.json").write_text(json.dumps(config))
    return damage


def _remove(*names):
    def damage(folder):
        for name in names:
            (folder / name).unlink()
    return damage


MODEL_FOLDERS = {
    "safetensors_truncated_data": (_truncate("model.safetensors", 0.9), "corrupt or truncated model.safetensors"),
    "safetensors_truncated_header": (_truncate("model.safetensors", 0.0001), "corrupt or truncated model.safetensors"),
    "safetensors_garbage": (_replace("model.safetensors", b"\xff" * 64), "corrupt or truncated model.safetensors"),
    "safetensors_bad_header_json": (_replace("model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}xxx"), "corrupt or truncated"),
    "config_hidden_mismatch": (_edit_config(intermediate_size=128), "config.json of"),
    "config_vocab_mismatch": (_edit_config(vocab_size=4000), "does not match its weights"),
    "config_not_json": (_replace("config.json", b"{not json"), "could not be loaded"),
    "config_unknown_type": (_edit_config(model_type="nonexistent_arch"), "could not be loaded"),
    "no_weights": (_remove("model.safetensors"), "needs config.json and *.safetensors weights"),
    "no_config": (_remove("config.json"), "needs config.json and *.safetensors weights"),
    "tokenizer_corrupt": (_replace("tokenizer.json", b"{\"version\": 1"), "could not be loaded"),
}


@pytest.mark.parametrize("case", list(MODEL_FOLDERS), ids=list(MODEL_FOLDERS))
def test_damaged_model_init(case, tokenizer_dir, data_dir, tmp_path, capsys):
    damage, expect = MODEL_FOLDERS[case]
    folder = _model_folder(tmp_path, tokenizer_dir, damage)
    base = recipe(tokenizer_dir, data_dir, tmp_path / "run", model={"init": str(folder)})
    base["tokenizer"] = None  # the model folder's own
    path = write_yaml(tmp_path / "recipe.yaml", base)
    assert_refused(capsys, ["train", path], expect, [tmp_path, data_dir, tokenizer_dir])


OUT_DIRS = {
    "file": (lambda p: p.write_text("my notes"), "is a file; a folder is expected here"),
    "foreign_folder": (lambda p: (p.mkdir(), (p / "thesis.tex").write_text("x")), "already exists and is not a regrow run folder"),
    "under_a_file": (None, "is a file, not a folder"),
}


@pytest.mark.parametrize("case", list(OUT_DIRS), ids=list(OUT_DIRS))
def test_out_dir_never_overwrites(case, tokenizer_dir, data_dir, tmp_path, capsys):
    make, expect = OUT_DIRS[case]
    out = tmp_path / "run"
    if make is None:
        out.write_text("a file")
        out = out / "inner"
    else:
        make(out)
    path = write_yaml(tmp_path / "recipe.yaml", recipe(tokenizer_dir, data_dir, out))
    assert_refused(capsys, ["train", path], expect, [tmp_path])
