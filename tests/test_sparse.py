"""Sparse methods (issue 18): wanda, sparsegpt, magnitude-sparse, random-sparse with --sparsity
and --pattern N:M; the output folder, masks checked against independent computations."""

from __future__ import annotations

import functools
import json
import re

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from regrow.cli.main import main
from regrow.data.sampler import MixtureSampler
from regrow.data.store import TokenStore

SPARSE = ["wanda", "sparsegpt", "magnitude-sparse", "random-sparse"]
FAST = ["--seq-len", "32", "--batch-size", "4", "--calibration-samples", "8", "--no-progress"]
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def sparse_prune(model, method, out, data_dir, *extra) -> int:
    args = ["prune", "--model", str(model), "--method", method, "--out", str(out), *FAST, *map(str, extra)]
    if method in ("wanda", "sparsegpt"):
        args += ["--data", str(data_dir)]
    return main(args)


@pytest.fixture(scope="module")
def sparse_folders(family_models, data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    folders = {}
    for method in SPARSE:
        for name, extra in (("half", ["--sparsity", "0.5"]), ("2:4", ["--pattern", "2:4"])):
            out = root / f"{method}-{name.replace(':', '-')}"
            assert sparse_prune(family_models["llama"], method, out, data_dir, *extra) == 0
            folders[method, name] = out
    return folders


@pytest.mark.parametrize("method", SPARSE)
def test_sparse_output_is_a_plain_hf_folder_with_its_mask(method, sparse_folders, family_models):
    """Vanilla transformers loads it; every linear of every layer has a boolean mask of its shape;
    the weights are zero where the mask says; half of each row (or 2 of every 4) is zero;
    everything else (embeddings, norms, head) is the source's."""
    source = AutoModelForCausalLM.from_pretrained(family_models["llama"])
    for name in ("half", "2:4"):
        out = sparse_folders[method, name]
        model = AutoModelForCausalLM.from_pretrained(out)
        masks = load_file(out / "sparsity_mask.safetensors")
        expected = {f"model.layers.{i}.{'self_attn' if p[0] in 'qkvo' else 'mlp'}.{p}.weight"
                    for i in range(source.config.num_hidden_layers) for p in LINEARS}
        assert set(masks) == expected
        params = dict(model.named_parameters())
        for key, kept in masks.items():
            weight = params[key]
            assert kept.dtype == torch.bool and kept.shape == weight.shape
            assert bool((weight[~kept] == 0).all())
            if name == "half":
                assert ((~kept).sum(1) == weight.shape[1] // 2).all()
            else:
                assert ((kept.reshape(weight.shape[0], -1, 4).sum(-1)) == 2).all()
                assert ((weight != 0).reshape(weight.shape[0], -1, 4).sum(-1) <= 2).all()
        for key, value in source.state_dict().items():
            if key not in masks:
                assert torch.equal(model.state_dict()[key], value), key
        report = json.loads((out / "pruning_report.json").read_text())
        assert report["sparsity"]["pattern"] == ("50% unstructured" if name == "half" else "2:4")
        assert report["sparsity"]["zeros"] == sum(int((~m).sum()) for m in masks.values())
        assert report["calibration_tokens"] == (8 * 32 if method in ("wanda", "sparsegpt") else 0)
        assert set(report["sparsity"]["per_tensor"]) == expected


def _calibration(data_dir, model):
    sampler = MixtureSampler(TokenStore(data_dir), {"code": 1.0, "prose": 1.0}, 32, 4, seed=0)  # prune sorts the domains
    return [sampler.batch(step)[0] for step in range(2)]


def linear_inputs(model, prefix: str, batches) -> dict[str, torch.Tensor]:
    """The inputs (one row per token) of every linear under `prefix`, over the batches, by weight name."""
    inputs: dict[str, list] = {}

    def keep(key, module, args, output):
        inputs.setdefault(key, []).append(args[0].reshape(-1, module.in_features))

    hooks = [module.register_forward_hook(functools.partial(keep, f"{name}.weight"))
             for name, module in model.named_modules() if name.startswith(prefix) and isinstance(module, torch.nn.Linear)]
    with torch.no_grad():
        for ids in batches:
            model(input_ids=ids)
    for hook in hooks:
        hook.remove()
    return {key: torch.cat(xs) for key, xs in inputs.items()}


def in_call_order(model, batches, pruned_weight):
    """(weight name, its inputs) for every linear of the decoder in call order, each collected on
    the model whose earlier linears already hold `pruned_weight(name, inputs)` (set after each)."""
    params = dict(model.named_parameters())
    for layer in range(model.config.num_hidden_layers):
        for linear in LINEARS:
            key = f"model.layers.{layer}.{'self_attn' if linear[0] in 'qkvo' else 'mlp'}.{linear}.weight"
            (x,) = linear_inputs(model, key.removesuffix(".weight"), batches).values()
            weight = pruned_weight(key, x)
            with torch.no_grad():
                params[key].copy_(weight)
            yield key, x


def test_wanda_masks_are_the_formula_in_call_order(sparse_folders, family_models, data_dir):
    """Independently: each linear's inputs collected by hooks over the calibration batches on the
    model whose earlier linears (earlier layers, and q/k/v before o, gate/up before down) hold
    their masks; score |W| x ||X||, lowest half of each row."""
    model = AutoModelForCausalLM.from_pretrained(family_models["llama"]).eval()
    masks = load_file(sparse_folders["wanda", "half"] / "sparsity_mask.safetensors")
    params = dict(model.named_parameters())
    checked = []

    def expected_weight(key, x):
        x = x.double()
        score = params[key].detach().abs().double() * (x * x).sum(0).sqrt()
        lowest = score.argsort(dim=1)[:, : score.shape[1] // 2]
        expected = torch.ones_like(score, dtype=torch.bool).scatter_(1, lowest, False)
        assert torch.equal(masks[key], expected), key
        checked.append(key)
        return params[key].detach() * expected

    for _ in in_call_order(model, _calibration(data_dir, model), expected_weight):
        pass
    assert set(checked) == set(masks)


def test_sparsegpt_reconstructs_better_than_zeroing(sparse_folders, family_models, data_dir):
    """Each linear's output error ||W X - W' X|| on its inputs in sparsegpt's pruned model is
    below that of sparsegpt's own mask applied without the update, and below wanda's and
    magnitude's weights on the same inputs (layers 0 and 1)."""
    model = AutoModelForCausalLM.from_pretrained(family_models["llama"]).eval()
    source = {k: v.detach().clone() for k, v in model.named_parameters()}
    pruned = {m: load_file(sparse_folders[m, "half"] / "model.safetensors") for m in ("sparsegpt", "wanda", "magnitude-sparse")}
    sgpt_masks = load_file(sparse_folders["sparsegpt", "half"] / "sparsity_mask.safetensors")
    for key, x in in_call_order(model, _calibration(data_dir, model), lambda key, x: pruned["sparsegpt"][key]):
        if key.startswith("model.layers.2."):
            break
        original = source[key]
        sgpt = output_error(x, original, pruned["sparsegpt"][key])
        assert sgpt < output_error(x, original, original * sgpt_masks[key]), key
        assert sgpt < output_error(x, original, pruned["wanda"][key]), key
        assert sgpt < output_error(x, original, pruned["magnitude-sparse"][key]), key
    report = json.loads((sparse_folders["sparsegpt", "half"] / "pruning_report.json").read_text())
    errors = report["method_details"]["relative_reconstruction_error"]
    assert len(errors) == model.config.num_hidden_layers and all(0 < e < 1 for e in errors.values())
    assert report["method_details"]["calls_after_pruning"] == 0


def output_error(x: torch.Tensor, original: torch.Tensor, weight: torch.Tensor) -> float:
    return float((x @ weight.T - x @ original.T).norm())


def test_random_sparse_is_seeded(family_models, tmp_path, data_dir):
    for seed in ("1", "1", "2"):
        assert sparse_prune(family_models["llama"], "random-sparse", tmp_path / seed / str(len(list(tmp_path.iterdir()))),
                            data_dir, "--sparsity", "0.3", "--seed", seed) == 0
    a, b, c = (load_file(p / "sparsity_mask.safetensors") for p in sorted(tmp_path.glob("*/*")))
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("extra, expect", [
    (["--sparsity", "0"], "allowed: 0 < S < 1"),
    (["--sparsity", "1"], "allowed: 0 < S < 1"),
    (["--sparsity", "1.5"], "allowed: 0 < S < 1"),
    (["--pattern", "4:4"], "N must be at least 1 and below M"),
    (["--pattern", "3:2"], "N must be at least 1 and below M"),
    (["--pattern", "two:four"], "is not N:M"),
    (["--pattern", "2:5"], "M=5 does not divide the input width 64"),
    (["--sparsity", "0.5", "--pattern", "2:4"], "exactly one of --sparsity S, --pattern N:M and --target-ratio R"),
    ([], "exactly one of --sparsity S, --pattern N:M and --target-ratio R"),
    (["--sparsity", "0.5", "--target-ratio", "0.5"], "exactly one of --sparsity S, --pattern N:M and --target-ratio R"),
    (["--target-ratio", "0.05"], "the ratio must be above"),
])
def test_sparse_bad_input(extra, expect, family_models, data_dir, tmp_path, capsys):
    capsys.readouterr()
    assert sparse_prune(family_models["llama"], "wanda", tmp_path / "out", data_dir, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert not (tmp_path / "out").exists()


def test_sparsegpt_refuses_a_block_that_splits_n_m_groups(family_models, data_dir, tmp_path, capsys):
    """Block 6 with 2:4 would choose the groups that straddle two blocks half in each: refused
    before any work; a multiple of M gives exactly 2 kept in every group of 4."""
    capsys.readouterr()
    assert sparse_prune(family_models["llama"], "sparsegpt", tmp_path / "out", data_dir, "--pattern", "2:4",
                        "--set", "sparsegpt.block_size=6") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sparsegpt.block_size 6 is not a multiple of M=4" in err[0], err
    assert not (tmp_path / "out").exists()
    assert sparse_prune(family_models["llama"], "sparsegpt", tmp_path / "ok", data_dir, "--pattern", "2:4",
                        "--set", "sparsegpt.block_size=8") == 0
    for name, kept in load_file(tmp_path / "ok" / "sparsity_mask.safetensors").items():
        assert bool((kept.reshape(kept.shape[0], -1, 4).sum(-1) == 2).all()), name


@pytest.mark.parametrize("pattern, sparsity, broken", [
    ("2:4", None, "group"),  # one group keeps 1 of 4 (at most N, but not N)
    (None, 0.5, "row"),  # one row drops fewer than its share
])
def test_mask_check_is_exact(family_models, pattern, sparsity, broken):
    """The check every sparse method's masks pass before anything is written: exactly N of every M,
    exactly each row's share of zeros; one wrong group or row is an error."""
    from regrow.compress.config import parse_pattern
    from regrow.compress.sparse import _check_masks
    from regrow.compress.sparsity import SparsityTarget

    model = AutoModelForCausalLM.from_pretrained(family_models["llama"])
    weight = model.model.layers[0].mlp.up_proj.weight
    rows, cols = weight.shape
    n, m = parse_pattern(pattern) if pattern else (None, None)
    target = SparsityTarget(sparsity=sparsity, n=n, m=m)
    kept = torch.zeros(rows, cols, dtype=torch.bool)
    if pattern:
        kept.view(rows, cols // m, m)[:, :, :n] = True  # the first N of every group
    else:
        kept[:, : cols - int(cols * sparsity)] = True
    name = "model.layers.0.mlp.up_proj.weight"
    _check_masks(model, {name: kept}, target)  # exact: accepted
    kept[3, 1] = False  # group 0 of row 3 keeps 1 of 4 / row 3 drops one more than its share
    with pytest.raises(RuntimeError, match=f"1 {broken}"):
        _check_masks(model, {name: kept}, target)
    kept[3, 1] = True
    kept[5, cols - 1] = True  # row 5 keeps one more
    with pytest.raises(RuntimeError, match=f"1 {broken}"):
        _check_masks(model, {name: kept}, target)


def test_sparse_target_ratio_leaves_that_fraction_non_zero(family_models, data_dir, tmp_path):
    """--target-ratio R for a sparse method: R of all parameters non-zero (counted in the export),
    so structured and sparse runs of one ratio have equal non-zero parameter counts."""
    assert sparse_prune(family_models["llama"], "magnitude-sparse", tmp_path / "o", data_dir, "--target-ratio", "0.7") == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "o")
    total = sum(p.numel() for p in model.parameters())
    non_zero = sum(int((p != 0).sum()) for p in model.parameters())
    assert 0.7 <= non_zero / total < 0.71
    report = json.loads((tmp_path / "o" / "pruning_report.json").read_text())
    assert report["target"]["parameters"] == non_zero and report["source"]["parameters"] == total


def test_a_study_mixes_structured_and_sparse_methods(tmp_path, family_models, data_dir, capsys):
    """One grid, one target ratio: magnitude (a smaller shape) and magnitude-sparse (the source's
    shape, the same non-zero count) pruned, continued with the mask held, reported side by side."""
    import yaml

    study = {
        "out_dir": str(tmp_path / "study"),
        "source": {"model": str(family_models["llama"])},
        "data": {"path": str(data_dir), "old": ["prose"], "new": ["code"], "seq_len": 32},
        "grid": {"method": ["magnitude", "magnitude-sparse"], "target_ratio": [0.6], "reinit": ["none"],
                 "schedule": [{"name": "cosine", "lr_max": 1e-3, "lr_min": 1e-4, "warmup_steps": 1}],
                 "replay": [0.0], "tokens": [256], "seed": [0]},
        "controls": {"scratch": False, "source": False},
        "prune": {"calibration_samples": 8, "batch_size": 4},
        "train": {"batch_size": 4, "eval_tokens": 256, "log_every": 1},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    assert main(["study", str(path)]) == 0
    runs = tmp_path / "study" / "runs"
    reports = {m: json.loads((runs / f"prune-{m}-r0.6-none-seed0" / "pruning_report.json").read_text())
               for m in ("magnitude", "magnitude-sparse")}
    structured, sparse = reports["magnitude"]["target"]["parameters"], reports["magnitude-sparse"]["target"]["parameters"]
    assert abs(sparse - structured) / structured < 0.03
    trained = runs / "train-magnitude-sparse-r0.6-none-seed0-cosine0-replay0-tok256"
    masks = load_file(runs / "prune-magnitude-sparse-r0.6-none-seed0" / "sparsity_mask.safetensors")
    weights = load_file(trained / "model" / "model.safetensors")
    assert all(bool((weights[k][~m] == 0).all()) for k, m in masks.items())
    assert json.loads((trained / "summary.json").read_text())["compute"]["sparsity"]["flops_counted_as"].startswith("dense")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "study")]) == 0
    md = (tmp_path / "study" / "report.md").read_text()
    assert "magnitude-sparse-r0.6-none" in md and "counted as dense" in md


def test_a_study_refuses_a_ratio_sparse_methods_cannot_reach_before_any_work(tmp_path, family_models, data_dir, capsys):
    """A grid ratio below the share of parameters a sparse method cannot zero (embeddings, head,
    norms) is one line naming the ratio and the floor, exit 2, before anything is written."""
    import yaml
    from transformers import AutoConfig

    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(family_models["llama"]))
    total = sum(p.numel() for p in model.parameters())
    linears = sum(m.weight.numel() for n, m in model.named_modules()
                  if isinstance(m, torch.nn.Linear) and n.startswith("model.layers."))
    floor = 1 - linears / total  # non-zero fraction left when every decoder linear is zero
    study = {
        "out_dir": str(tmp_path / "study"),
        "source": {"model": str(family_models["llama"])},
        "data": {"path": str(data_dir), "old": ["prose"], "new": ["code"], "seq_len": 32},
        "grid": {"method": ["magnitude", "wanda"], "target_ratio": [round(floor - 0.01, 3)], "reinit": ["none"],
                 "schedule": [{"name": "cosine", "lr_max": 1e-3, "lr_min": 1e-4, "warmup_steps": 1}],
                 "replay": [0.0], "tokens": [256], "seed": [0]},
        "prune": {"calibration_samples": 8, "batch_size": 4},
        "train": {"batch_size": 4},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    capsys.readouterr()
    assert main(["study", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"grid.target_ratio {round(floor - 0.01, 3)} with sparse method 'wanda'" in err[0], err
    assert f"above {floor:.3f}" in err[0], err
    assert not (tmp_path / "study").exists()


def test_structured_method_refuses_sparsity(family_models, data_dir, tmp_path, capsys):
    capsys.readouterr()
    assert main(["prune", "--model", str(family_models["llama"]), "--method", "magnitude", "--sparsity", "0.5",
                 "--out", str(tmp_path / "o")]) == 2
    assert "apply to the sparse methods" in capsys.readouterr().err


# --- sparse continued pre-training ------------------------------------------------------------

def _train(init, tokenizer_dir, data_dir, out, steps, resume=False, **train):
    from conftest import recipe

    from regrow.config import from_dict
    from regrow.train.config import RunConfig
    from regrow.train.trainer import Trainer

    spec = recipe(tokenizer_dir, data_dir, out, model={"init": str(init)})
    spec["train"].update(steps=steps, checkpoint_every=3, eval_every=3, **train)
    spec["schedule"]["total_steps"] = 6
    trainer = Trainer(from_dict(RunConfig, spec), resume=resume)
    trainer.run()
    return trainer


def test_training_holds_the_mask_exactly_and_resumes(sparse_folders, tokenizer_dir, data_dir, tmp_path):
    """From a 2:4 model (its mask found beside model.init): after training the masked weights and
    their AdamW moments are exactly zero, the kept ones moved; the export keeps 2:4 and carries
    the mask; stopped at step 3 and resumed, the weights equal the uninterrupted run's."""
    init = sparse_folders["magnitude-sparse", "2:4"]
    masks = load_file(init / "sparsity_mask.safetensors")
    start = load_file(init / "model.safetensors")
    whole = _train(init, tokenizer_dir, data_dir, tmp_path / "whole", 6)
    params = dict(whole.model.named_parameters())
    for name, kept in masks.items():
        param = params[name].detach()
        assert bool((param[~kept] == 0).all()), name
        assert bool((param[kept] != start[name][kept]).any()), name  # trained
        state = whole.optimizer.state[params[name]]
        assert bool((state["exp_avg"][~kept] == 0).all()) and bool((state["exp_avg_sq"][~kept] == 0).all())
        assert bool((state["exp_avg_sq"][kept] != 0).any())
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "whole" / "model")
    for name, weight in exported.named_parameters():
        if name in masks:
            assert ((weight != 0).reshape(weight.shape[0], -1, 4).sum(-1) <= 2).all(), name
    carried = load_file(tmp_path / "whole" / "model" / "sparsity_mask.safetensors")
    assert set(carried) == set(masks) and all(torch.equal(carried[k], masks[k]) for k in masks)
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["compute"]["sparsity"]["zeros"] == sum(int((~m).sum()) for m in masks.values())
    _train(init, tokenizer_dir, data_dir, tmp_path / "resumed", 3)
    resumed = _train(init, tokenizer_dir, data_dir, tmp_path / "resumed", 6, resume=True)
    for name, param in resumed.model.named_parameters():
        assert torch.equal(param, params[name]), name


def test_masked_weights_take_no_part_in_the_gradient_norm(sparse_folders, tokenizer_dir, data_dir, tmp_path):
    """The clipped and logged gradient norm of a run holding a mask is the norm of the kept
    weights' gradients only (computed here with plain torch on the same batch)."""
    import copy

    import torch.nn.functional as F
    from conftest import recipe

    from regrow.config import from_dict
    from regrow.train.config import RunConfig
    from regrow.train.trainer import Trainer

    init = sparse_folders["magnitude-sparse", "half"]
    masks = load_file(init / "sparsity_mask.safetensors")
    spec = recipe(tokenizer_dir, data_dir, tmp_path / "run", model={"init": str(init)})
    spec["train"].update(steps=1, grad_clip=1e-3)
    spec["schedule"]["total_steps"] = 6
    trainer = Trainer(from_dict(RunConfig, spec))
    model = copy.deepcopy(trainer.model)
    inputs, targets = trainer.sampler.batch(0, 0)
    logits = model(input_ids=inputs).logits
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)).backward()
    squares = 0.0
    for name, param in model.named_parameters():
        grad = param.grad if name not in masks else param.grad * masks[name]
        squares += float((grad.double() ** 2).sum())
    masked = sum(float((p.grad[~masks[n]].double() ** 2).sum()) for n, p in model.named_parameters() if n in masks)
    assert masked > 1e-3 * squares  # the masked weights do have gradients: the test can tell
    _, grad_norm = trainer.train_step(0)
    assert grad_norm == pytest.approx(squares**0.5, rel=1e-4)


def test_dense_training_when_asked(sparse_folders, tokenizer_dir, data_dir, tmp_path):
    init = sparse_folders["magnitude-sparse", "half"]
    masks = load_file(init / "sparsity_mask.safetensors")
    trainer = _train(init, tokenizer_dir, data_dir, tmp_path / "dense", 2, sparsity_mask="none")
    params = dict(trainer.model.named_parameters())
    assert any(bool((params[n].detach()[~m] != 0).any()) for n, m in masks.items())
    assert not (tmp_path / "dense" / "model" / "sparsity_mask.safetensors").exists()


def test_a_mask_of_another_model_is_refused(sparse_folders, tokenizer_dir, data_dir, tmp_path, capsys):
    from safetensors.torch import save_file

    bad = tmp_path / "mask.safetensors"
    save_file({"model.layers.0.mlp.up_proj.weight": torch.ones(3, 5, dtype=torch.bool)}, str(bad))
    line = _training_refuses_mask(bad, sparse_folders["wanda", "half"], tokenizer_dir, data_dir, tmp_path, capsys)
    assert "model.layers.0.mlp.up_proj.weight" in line and "(3, 5)" in line


def _training_refuses_mask(mask, init, tokenizer_dir, data_dir, tmp_path, capsys) -> str:
    """Train from `init` holding the mask file `mask`: refused, one line (returned), nothing written."""
    from conftest import recipe

    spec = recipe(tokenizer_dir, data_dir, tmp_path / "run", model={"init": str(init)})
    spec["train"]["sparsity_mask"] = str(mask)
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(spec))
    capsys.readouterr()
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert not (tmp_path / "run").exists()
    return err[0]


@pytest.mark.parametrize("damage, expect", [
    ("drop_mlp", "does not cover the weights it was made for: 12 missing (model.layers.0.mlp.down_proj.weight"),
    ("other_model", "was made for another model: vocab_size 9999 there"),
    ("no_record", "does not record the model and weights it was made for"),
])
def test_a_mask_that_does_not_cover_the_model_is_refused(damage, expect, sparse_folders, tokenizer_dir, data_dir,
                                                         tmp_path, capsys):
    """A mask file must cover exactly the weights it was made for, of a model of this shape: one
    whose MLP masks were removed, one made for another model, one that does not say are refused
    (they trained with exit 0 before, holding only part of the pattern)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    init = sparse_folders["wanda", "half"]
    source = init / "sparsity_mask.safetensors"
    masks = load_file(source)
    with safe_open(str(source), "pt") as handle:
        metadata = dict(handle.metadata())
    if damage == "drop_mlp":
        masks = {k: v for k, v in masks.items() if ".mlp." not in k}
    elif damage == "other_model":
        model = json.loads(metadata["regrow.model"])
        metadata["regrow.model"] = json.dumps({**model, "vocab_size": 9999})
    else:
        metadata = {}
    bad = tmp_path / "mask.safetensors"
    save_file(masks, str(bad), metadata=metadata or None)
    assert expect in _training_refuses_mask(bad, init, tokenizer_dir, data_dir, tmp_path, capsys)


# --- lottery-ticket rewinding -----------------------------------------------------------------

@pytest.fixture(scope="module")
def early_snapshot(tokenizer_dir, tmp_path_factory):
    """Stands for an early snapshot of the source's run: the same architecture, other weights."""
    from conftest import make_family_model

    from regrow.data.tokenizer import load_tokenizer, vocab_size_of

    tokenizer = load_tokenizer(tokenizer_dir)
    folder = tmp_path_factory.mktemp("snapshot") / "tokens-1000"
    make_family_model("llama", vocab_size_of(tokenizer), seed=7).save_pretrained(folder)
    return folder


def test_rewind_applies_the_sparse_mask_to_the_early_weights(family_models, early_snapshot, data_dir, tmp_path):
    assert sparse_prune(family_models["llama"], "wanda", tmp_path / "plain", data_dir, "--sparsity", "0.5") == 0
    assert sparse_prune(family_models["llama"], "wanda", tmp_path / "rewound", data_dir, "--sparsity", "0.5",
                        "--reinit", "rewind", "--rewind-from", early_snapshot) == 0
    masks = load_file(tmp_path / "plain" / "sparsity_mask.safetensors")
    rewound_masks = load_file(tmp_path / "rewound" / "sparsity_mask.safetensors")
    early = load_file(early_snapshot / "model.safetensors")
    weights = load_file(tmp_path / "rewound" / "model.safetensors")
    for name, kept in masks.items():
        assert torch.equal(rewound_masks[name], kept)  # the mask found on the trained weights
        assert torch.equal(weights[name], early[name] * kept)
    assert torch.equal(weights["model.embed_tokens.weight"], early["model.embed_tokens.weight"])


def test_rewind_gives_the_kept_units_early_weights(family_models, early_snapshot, data_dir, tmp_path):
    target = tmp_path / "depth.yaml"
    target.write_text("num_hidden_layers: 2\n")
    base = ["prune", "--model", str(family_models["llama"]), "--method", "depth", "--target", str(target),
            "--data", str(data_dir), *FAST]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "rewound"), "--reinit", "rewind", "--rewind-from", str(early_snapshot)]) == 0
    kept = json.loads((tmp_path / "plain" / "pruning_report.json").read_text())["kept"]["layers"]
    assert json.loads((tmp_path / "rewound" / "pruning_report.json").read_text())["kept"]["layers"] == kept
    early = load_file(early_snapshot / "model.safetensors")
    weights = load_file(tmp_path / "rewound" / "model.safetensors")
    for new, old in enumerate(kept):
        for key, value in weights.items():
            if key.startswith(f"model.layers.{new}."):
                assert torch.equal(value, early[key.replace(f"layers.{new}.", f"layers.{old}.", 1)]), key


@pytest.mark.parametrize("extra, expect", [
    (["--reinit", "rewind"], "--reinit rewind needs --rewind-from SNAPSHOT"),
    (["--rewind-from", "somewhere"], "--rewind-from is for --reinit rewind"),
])
def test_rewind_bad_input(extra, expect, family_models, data_dir, tmp_path, capsys):
    capsys.readouterr()
    assert sparse_prune(family_models["llama"], "magnitude-sparse", tmp_path / "o", data_dir, "--sparsity", "0.5", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err


def test_rewind_snapshot_of_another_shape_is_refused(family_models, data_dir, tmp_path, capsys):
    capsys.readouterr()
    assert sparse_prune(family_models["llama"], "magnitude-sparse", tmp_path / "o", data_dir, "--sparsity", "0.5",
                        "--reinit", "rewind", "--rewind-from", family_models["mistral"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a snapshot of this model" in err[0], err
    assert not (tmp_path / "o").exists()


def test_every_sparse_method_runs_on_every_family(family_models, data_dir, tmp_path):
    """Each family (dense and mixture of experts) through every sparse method at 50%: a folder
    vanilla transformers loads, the zeros where the mask says; every 2-D weight of a layer but the
    router and the shared expert's gate is masked, and so is every fused 3-D expert tensor, each
    expert's rows losing half; the report's shares are those of the masks; a rewind on each family."""
    from conftest import FAMILY_CONFIGS

    for f, family in enumerate(FAMILY_CONFIGS):
        source = AutoModelForCausalLM.from_pretrained(family_models[family])
        n_source = sum(p.numel() for p in source.parameters())
        layer_weights = {k for k, p in source.named_parameters() if re.search(r"\.(layers|h)\.\d+\.", k) and k.endswith("weight")
                         and p.dim() == 2 and not k.endswith((".gate.weight", ".router.weight", "shared_expert_gate.weight"))}
        fused = {k for k, p in source.named_parameters() if p.dim() == 3 and ".experts." in k}  # not a Mamba conv1d
        for method in SPARSE:
            out = tmp_path / f"{family}-{method}"
            assert sparse_prune(family_models[family], method, out, data_dir, "--sparsity", "0.5") == 0, (family, method)
            masks = load_file(out / "sparsity_mask.safetensors")  # named as the loaded model's parameters
            weights = dict(AutoModelForCausalLM.from_pretrained(out).named_parameters())
            assert masks and all(bool((weights[k][~m] == 0).all()) for k, m in masks.items()), (family, method)
            assert set(masks) == layer_weights | fused, (family, set(masks) ^ (layer_weights | fused))
            for key in fused:  # a row: an expert's output unit ([experts, in, out] for gpt-oss: a column)
                inputs = -2 if getattr(source.get_submodule(key.rpartition(".")[0]), "is_transposed", False) else -1
                assert ((~masks[key]).sum(inputs) == masks[key].shape[inputs] // 2).all(), key
            sparsity = json.loads((out / "pruning_report.json").read_text())["sparsity"]
            assert sparsity["share_of_parameters"] == pytest.approx(sum(m.numel() for m in masks.values()) / n_source)
            assert sparsity["share_zeroed"] == pytest.approx(sum(int((~m).sum()) for m in masks.values()) / n_source)
        AutoModelForCausalLM.from_pretrained(out)
        rewound = tmp_path / f"{family}-rewind"
        method = SPARSE[f % len(SPARSE)]
        assert sparse_prune(family_models[family], method, rewound, data_dir, "--sparsity", "0.5", "--reinit", "rewind",
                            "--rewind-from", family_models[family]) == 0, family


def test_row_selection_with_tied_scores():
    """Many equal scores (dead input features give whole columns of 0): each row still loses
    exactly its share, and no dropped score is above a kept one of its row."""
    from regrow.compress.sparsity import SparsityTarget

    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (50, 16), generator=generator).float()
    scores[:, :5] = 0
    kept = SparsityTarget(sparsity=0.5).keep(scores)
    assert ((~kept).sum(1) == 8).all()
    for row, keep in zip(scores, kept):
        assert row[~keep].max() <= row[keep].min()


def test_calibration_pass_stops_every_batch_thread_on_an_error(family_models, data_dir):
    """An error while pruning a linear (here the third) reaches the caller, and no batch thread
    is left behind; every batch waited at the first two linears (each saw all batches' rows)."""
    import contextlib
    import threading

    from regrow.compress.sparsity import prune_in_call_order

    model = AutoModelForCausalLM.from_pretrained(family_models["llama"]).eval()
    linears = {name: module for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and name.startswith("model.layers.")}
    batches = _calibration(data_dir, model)
    seen = []

    def prune(name, module, rows):
        seen.append((name, rows))
        if len(seen) == 3:
            raise RuntimeError("stop here")

    before = threading.active_count()
    with pytest.raises(RuntimeError, match="stop here"):
        prune_in_call_order(model, batches, contextlib.nullcontext, linears, lambda xs: sum(x.shape[0] for x in xs), prune)
    assert threading.active_count() == before
    assert [name for name, _ in seen] == list(linears)[:3]
    assert all(rows == sum(ids.numel() for ids in batches) for _, rows in seen)


def routed_inputs(family_models, family, out, data_dir, batches=None):
    """(experts module, its index L, {expert: its input rows}) of the first mixture-of-experts layer,
    collected by a hook on plain transformers' experts module in the source model whose earlier
    layers and layer L's attention hold the pruned weights of `out` (what the experts saw)."""
    source = AutoModelForCausalLM.from_pretrained(family_models[family]).eval()
    pruned = dict(AutoModelForCausalLM.from_pretrained(out).named_parameters())
    layer = next(i for i, block in enumerate(source.model.layers) if hasattr(block.mlp, "experts"))
    earlier = tuple(f"model.layers.{i}." for i in range(layer)) + (f"model.layers.{layer}.self_attn.",)
    with torch.no_grad():
        for key, param in source.named_parameters():
            if key.startswith(earlier):
                param.copy_(pruned[key])
    experts = source.model.layers[layer].mlp.experts
    seen = []
    handle = experts.register_forward_pre_hook(lambda module, args: seen.append((args[0], args[1])))
    with torch.no_grad():
        for ids in batches or _calibration(data_dir, source):
            source(input_ids=ids)
    handle.remove()
    hidden, index = torch.cat([h for h, _ in seen]), torch.cat([i for _, i in seen])
    routed = {e: hidden[(index == e).any(-1)] for e in range(experts.gate_up_proj.shape[0])}
    return experts, layer, routed


def wanda_mask(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    score = weight.abs().double() * x.double().square().sum(0).sqrt()
    lowest = score.argsort(dim=1)[:, : score.shape[1] // 2]
    return torch.ones_like(score, dtype=torch.bool).scatter_(1, lowest, False)


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe"])
def test_wanda_scores_each_expert_on_the_tokens_routed_to_it(family, family_models, data_dir, tmp_path):
    """Each expert's gate_up matrix is Wanda's formula on the hidden states the router sent to that
    expert; its down matrix on act(gate) x up computed with the pruned gate_up (independently,
    from plain transformers' routing); the router and the shared expert's gate stay dense."""
    out = tmp_path / family
    assert sparse_prune(family_models[family], "wanda", out, data_dir, "--sparsity", "0.5") == 0
    masks = load_file(out / "sparsity_mask.safetensors")
    experts, layer, routed = routed_inputs(family_models, family, out, data_dir)
    prefix = f"model.layers.{layer}.mlp"
    assert not any(key.startswith((f"{prefix}.gate.", f"{prefix}.shared_expert_gate.")) for key in masks)
    assert masks[f"{prefix}.experts.gate_up_proj"].shape == experts.gate_up_proj.shape
    for e, x in routed.items():
        assert len(x), f"expert {e} got no calibration token: the test needs every expert routed to"
        gate_up = experts.gate_up_proj[e].detach()
        assert torch.equal(masks[f"{prefix}.experts.gate_up_proj"][e], wanda_mask(gate_up, x)), e
        gate, up = (x.double() @ (gate_up * wanda_mask(gate_up, x)).double().T).chunk(2, dim=-1)
        inner = experts.act_fn(gate) * up
        assert torch.equal(masks[f"{prefix}.experts.down_proj"][e], wanda_mask(experts.down_proj[e].detach(), inner)), e


def test_sparsegpt_reconstructs_each_expert_better_than_zeroing(family_models, data_dir, tmp_path):
    """On the tokens routed to it, each expert's gate_up output error after sparsegpt's update is
    below that of its own mask without the update, and below wanda's weights."""
    out = {}
    for method in ("sparsegpt", "wanda"):
        out[method] = tmp_path / method
        assert sparse_prune(family_models["mixtral"], method, out[method], data_dir, "--sparsity", "0.5") == 0
    masks = load_file(out["sparsegpt"] / "sparsity_mask.safetensors")
    experts, layer, routed = routed_inputs(family_models, "mixtral", out["sparsegpt"], data_dir)
    key = f"model.layers.{layer}.mlp.experts.gate_up_proj"
    sgpt = dict(AutoModelForCausalLM.from_pretrained(out["sparsegpt"]).named_parameters())[key].detach()
    wanda = dict(AutoModelForCausalLM.from_pretrained(out["wanda"]).named_parameters())[key].detach()
    for e, x in routed.items():
        original = experts.gate_up_proj[e].detach()
        error = output_error(x, original, sgpt[e])
        assert error < output_error(x, original, original * masks[key][e]), e
        assert error < output_error(x, original, wanda[e]), e


def test_an_expert_no_calibration_token_reaches_is_pruned_by_magnitude(family_models, data_dir, tmp_path):
    """Two calibration tokens reach at most four of eight experts: the others are pruned by
    magnitude and listed in the report (the routing checked in plain transformers)."""
    out = tmp_path / "few"
    assert sparse_prune(family_models["mixtral"], "wanda", out, data_dir, "--sparsity", "0.5", "--seq-len", "2",
                        "--batch-size", "1", "--calibration-samples", "1") == 0
    masks = load_file(out / "sparsity_mask.safetensors")
    report = json.loads((out / "pruning_report.json").read_text())
    sampler = MixtureSampler(TokenStore(data_dir), {"code": 1.0, "prose": 1.0}, 2, 1, seed=0)
    experts, layer, routed = routed_inputs(family_models, "mixtral", out, data_dir, [sampler.batch(0)[0]])
    unrouted = [e for e, x in routed.items() if not len(x)]
    assert len(unrouted) >= 4
    prefix = f"model.layers.{layer}.mlp.experts"
    listed = [name for name in report["method_details"]["by_magnitude_without_tokens"] if name.startswith(prefix)]
    assert sorted(listed) == sorted(f"{prefix}.{fused}[{e}]" for e in unrouted for fused in ("gate_up_proj", "down_proj"))
    for e in unrouted:
        for fused in ("gate_up_proj", "down_proj"):
            weight = getattr(experts, fused)[e].detach().abs()
            lowest = weight.argsort(dim=1)[:, : weight.shape[1] // 2]
            assert torch.equal(masks[f"{prefix}.{fused}"][e], torch.ones_like(weight, dtype=torch.bool).scatter_(1, lowest, False))


def test_training_holds_the_mask_of_fused_expert_tensors(family_models, tokenizer_dir, data_dir, tmp_path):
    """A 2:4 Mixtral (every expert's matrices masked): after training, the masked entries of the
    fused expert tensors and their AdamW moments are exactly zero and kept ones moved; the
    exported model (per-expert tensors on disk) loads with each expert still 2:4."""
    init = tmp_path / "init"
    assert sparse_prune(family_models["mixtral"], "magnitude-sparse", init, data_dir, "--pattern", "2:4") == 0
    masks = load_file(init / "sparsity_mask.safetensors")
    start = {k: p.detach().clone() for k, p in AutoModelForCausalLM.from_pretrained(init).named_parameters()}
    fused = [name for name, kept in masks.items() if kept.dim() == 3]
    assert fused
    trainer = _train(init, tokenizer_dir, data_dir, tmp_path / "run", 3)
    params = dict(trainer.model.named_parameters())
    for name in fused:
        kept, param = masks[name], params[name].detach()
        assert bool((param[~kept] == 0).all()) and bool((param[kept] != start[name][kept]).any()), name
        state = trainer.optimizer.state[params[name]]
        assert bool((state["exp_avg"][~kept] == 0).all()) and bool((state["exp_avg_sq"][~kept] == 0).all()), name
    exported = dict(AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model").named_parameters())
    for name in fused:
        assert ((exported[name] != 0).reshape(-1, 4).sum(-1) <= 2).all(), name
