"""The pipeline of a sparse method (docs/ALGORITHMS.md §10): load, calibrate, mask, write.

A sparse method keeps the architecture and zeroes weights of every linear layer inside the
decoder (attention and MLP projections, a shared expert, and each expert's matrices of a fused
mixture of experts as layers of their own; not the router, the shared expert's gate, the
embeddings or the LM head): `--sparsity S` removes the fraction S of each output row,
`--pattern N:M` keeps N of every M consecutive inputs of a row. The output is a plain HF folder with the zeros in place, `sparsity_mask.safetensors` and
the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from regrow.atomic import atomic_dir, write_json_atomic
from regrow.compress.calibration import calibration_sampler
from regrow.compress.config import PruneConfig
from regrow.compress.families import adapter_for
from regrow.compress.reinit import REINITS
from regrow.compress.report import CONFIG, REPORT
from regrow.compress.rewind import rewind_weights
from regrow.compress.sparsity import (
    SparseContext,
    SparsityTarget,
    sparse_units,
    sparse_weight_count,
)
from regrow.config import to_dict, write_yaml_atomic
from regrow.data.tokenizer import load_tokenizer_if_any
from regrow.errors import RegrowError
from regrow.models.flops import forward_flops_per_token, model_shape
from regrow.models.hf import load_model
from regrow.models.sparsity import MASK_FILE, HeldMasks, write_mask_file


def prune_sparse(cfg: PruneConfig, method, device: torch.device, out, started: float,
                 echo: Callable[[str], None]) -> dict:
    """Load, calibrate, mask every linear of the decoder, check, write (one process)."""
    model = load_model(cfg.model, cfg.trust_remote_code).to(device)
    model.eval()
    _check_finite(model, repr(cfg.model))
    adapter = adapter_for(model.config)
    units = sparse_units(model, adapter)
    n_weights, n_source = sparse_weight_count(model, adapter), sum(p.numel() for p in model.parameters())
    target = SparsityTarget.of(cfg) if cfg.target_ratio is None else SparsityTarget.leaving(cfg.target_ratio, n_source, n_weights)
    for name, unit in ((n, u) for layer in units.values() for n, u in layer.items()):
        target.check(name, unit.weight)
    tokenizer = load_tokenizer_if_any(cfg.model, cfg.trust_remote_code)
    batches, mixture = [], {}
    if method.needs_data:
        sampler, mixture = calibration_sampler(cfg, tokenizer, model)
        steps = -(-cfg.calibration_samples // cfg.batch_size)
        batches = [sampler.batch(step)[0].to(device) for step in range(steps)]
    echo(f"source: {type(model).__name__}, {len(units)} layers; {n_weights:,} weights ({n_weights / n_source:.1%} of "
         f"the parameters) in {sum(len(v) for v in units.values())} matrices to sparsify to {target.describe()}")
    scoring = time.perf_counter()
    result = method.sparsify(SparseContext(model, adapter, target, cfg, device, batches))
    scoring_seconds = time.perf_counter() - scoring
    _check_finite(model, f"{cfg.model!r} after {cfg.method} (its calibration activations overflowed)")
    _check_masks(model, result.masks, target)
    if cfg.rewind_from:  # lottery-ticket rewinding: the mask found on the trained weights, the early weights
        rewind_weights(model, cfg.rewind_from, cfg.trust_remote_code)
    if cfg.reinit != "none":
        model = REINITS[cfg.reinit](model, adapter, cfg.seed, cfg.shrink_perturb.shrink, cfg.shrink_perturb.perturb)
    HeldMasks(model, result.masks, out / MASK_FILE).apply()  # the zeros, also after a reinit
    params = dict(model.named_parameters())
    zeros = {name: int((~kept).sum()) for name, kept in result.masks.items()}
    for name in result.masks:  # the written weights hold the mask's zeros (at least)
        assert int((params[name] == 0).sum()) >= zeros[name]
    tokens = len(batches) * cfg.batch_size * cfg.seq_len
    n_kept = n_source - sum(zeros.values())
    report = {
        "model": str(cfg.model),
        "method": cfg.method,
        "reinit": cfg.reinit,
        # parameters: the non-zero ones (what a sparse model is compared by; its shape is the source's)
        "source": {"parameters": n_source},
        "target": {"parameters": n_kept, "fraction_kept": n_kept / n_source, "counts": "non-zero parameters"},
        "exactness": {"checked": False, "reason": "the architecture is unchanged; the zeros are checked against the mask"},
        "sparsity": {"pattern": target.describe(), "fraction_removed": target.fraction_removed,
                     "weights": n_weights, "zeros": sum(zeros.values()),
                     # the share of all parameters a sparse method may zero, and the share it zeroed
                     "share_of_parameters": n_weights / n_source, "share_zeroed": sum(zeros.values()) / n_source,
                     "per_tensor": {name: zeros[name] / kept.numel() for name, kept in result.masks.items()}},
        "mixture": mixture,
        "calibration_tokens": tokens,
        "flops": method.flops(model_shape(model), cfg.seq_len, {"calibration_tokens": tokens}),
        "forward_flops": forward_flops_per_token(model_shape(model), cfg.seq_len) * tokens,
        "method_details": result.details,
        "wall_seconds": {"scoring": scoring_seconds, "total": None},
    }
    model = model.cpu()
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        write_mask_file(tmp / MASK_FILE, result.masks, model)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        report["wall_seconds"]["total"] = time.perf_counter() - started
        write_yaml_atomic(tmp / CONFIG, to_dict(cfg))
        write_json_atomic(tmp / REPORT, report)
    echo(f"removed {sum(zeros.values()):,} of {n_weights:,} weights ({sum(zeros.values()) / n_weights:.1%}, "
         f"{target.describe()}; {sum(zeros.values()) / n_source:.1%} of all parameters); wrote {out} in {report['wall_seconds']['total']:.1f} s")
    return report


def _check_finite(model: nn.Module, where: str) -> None:
    bad = next((name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())), None)
    if bad is not None:
        raise RegrowError(f"weight {bad} of {where} holds NaN or infinite values; nothing was written")


def _check_masks(model: nn.Module, masks: dict[str, torch.Tensor], target: SparsityTarget) -> None:
    """Every mask has its weight's shape and exactly the target's pattern: N kept in every group of
    M, or each row's share of zeros (a method's bug, not the user's: nothing is written then). A
    fused experts tensor's rows are its experts' rows (as linear layers: [out, in])."""
    params = dict(model.named_parameters())
    for name, kept in masks.items():
        if kept.dtype != torch.bool or kept.shape != params[name].shape:
            raise RuntimeError(f"sparsity mask of {name}: {kept.dtype} {tuple(kept.shape)} does not fit the weight")
        if kept.dim() == 3 and getattr(model.get_submodule(name.rpartition(".")[0]), "is_transposed", False):
            kept = kept.transpose(1, 2)  # gpt-oss's experts are stored [experts, in, out]
        kept = kept.reshape(-1, kept.shape[-1])
        if target.m is not None:
            groups = kept.reshape(kept.shape[0], -1, target.m).sum(-1)
            wrong = int((groups != target.n).sum())
            what = f"{wrong} group(s) of {target.m} do not keep exactly {target.n}"
        else:
            removed = int(kept.shape[1] * target.sparsity)
            wrong = int(((~kept).sum(1) != removed).sum())
            what = f"{wrong} row(s) do not drop exactly {removed} of {kept.shape[1]}"
        if wrong:
            raise RuntimeError(f"sparsity mask of {name} breaks the {target.describe()} pattern: {what}")
