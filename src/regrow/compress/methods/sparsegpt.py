"""`sparsegpt` (Frantar & Alistarh 2023): per linear layer, H = (2/n) X^T X + lambda I (lambda =
percdamp x mean diag), the upper Cholesky factor of H^-1; input columns in blocks: inside a
block the mask is chosen by w^2 / [H^-1]_jj^2, then each column's pruning error is spread over
the block's later columns (OBS update) and, after the block, over the remaining columns.
Every linear is calibrated on the outputs of the linears pruned before it, in one forward pass
(the released code's `--true-sequential` order; compress/sparsity.py `prune_in_call_order`).
Each expert's matrix of a mixture of experts is solved with the Hessian of the tokens routed to
it; an expert no calibration token reached is pruned by magnitude (listed in the report).

Where regrow and the released code differ: the code picks the block's unstructured mask by one
threshold over the whole block (rows x columns), so rows end with different sparsities; regrow
picks it per row (each row removes its share of the block's columns), the same per-row
sparsity as Wanda and magnitude-sparse, so the methods are compared at equal sparsity per row.
N:M is as in the code (per group of M columns of a row)."""

from collections import defaultdict

import torch

from regrow.compress.config import parse_pattern
from regrow.compress.methods.base import SparseMethod, register
from regrow.compress.sparsity import (
    SparseResult,
    SparsityTarget,
    magnitude_where_unreached,
    masks_by_parameter,
    prune_in_call_order,
    sparse_units,
)
from regrow.errors import RegrowError


@register("sparsegpt")
class SparseGPT(SparseMethod):
    summary = "one-shot OBS weight update with the layer Hessian of calibration data (SparseGPT)"

    def check_config(self, cfg) -> None:
        """An N:M group must lie inside one block: the mask of a block is chosen on its own, so a
        group split across two blocks would keep N in each part, not N of M."""
        if cfg.pattern is None:
            return
        n, m = parse_pattern(cfg.pattern)
        block = cfg.sparsegpt.block_size
        if block % m:
            raise RegrowError(f"sparsegpt.block_size {block} is not a multiple of M={m} of --pattern {n}:{m}: its N:M "
                              f"groups would straddle blocks; use a multiple of {m} (default 128)")

    def sparsify(self, ctx) -> SparseResult:
        options = ctx.cfg.sparsegpt
        layer_of, units = {}, {}
        for index, layer in sparse_units(ctx.model, ctx.adapter).items():
            for name, unit in layer.items():
                layer_of[name], units[name] = index, unit
        masks, before, after = {}, defaultdict(float), defaultdict(float)

        def prune(name, unit, hessian):
            weight = unit.weight.float()
            new, kept = solve(weight, hessian, ctx.target, options.block_size, options.percdamp, name)
            before[layer_of[name]] += float(((weight @ hessian) * weight).sum())
            delta = weight - new
            after[layer_of[name]] += float(((delta @ hessian) * delta).sum())
            unit.weight.copy_(new.to(unit.weight.dtype))
            masks[name] = kept

        late = prune_in_call_order(ctx.model, ctx.batches, ctx.autocast, units, hessian_of, prune)
        unreached = magnitude_where_unreached(units, masks, ctx.target)
        errors = {index: after[index] / before[index] if before[index] else 0.0 for index in sorted(before)}
        return SparseResult(masks_by_parameter(units, masks),
                            {"calibration_tokens": sum(ids.numel() for ids in ctx.batches),
                             "block_size": options.block_size, "percdamp": options.percdamp,
                             "relative_reconstruction_error": errors, "calls_after_pruning": late,
                             "by_magnitude_without_tokens": unreached})


def hessian_of(inputs: list[torch.Tensor]) -> torch.Tensor:
    """H = (2/n) sum over the n input tokens of x x^T (float32, as the released code)."""
    n = sum(x.shape[0] for x in inputs)
    width = inputs[0].shape[1]
    H = torch.zeros(width, width, device=inputs[0].device)
    for x in inputs:
        x = x.float()
        H.addmm_(x.T, x, alpha=2.0 / n)
    return H


def solve(weight: torch.Tensor, hessian: torch.Tensor, target: SparsityTarget, block: int, percdamp: float,
          name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(updated weight with the zeros in place, kept mask) of one linear layer."""
    W = weight.clone()
    rows, cols = W.shape
    H = hessian.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols, device=H.device)
    try:
        Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    except torch.linalg.LinAlgError as err:
        raise RegrowError(f"sparsegpt: the Hessian of {name} is not positive definite even with dampening "
                          f"{percdamp}; use more calibration data or raise sparsegpt.percdamp") from err
    pruned = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        Wt = W[:, i1:i2].T.contiguous()  # the block's columns as rows: each step touches contiguous memory
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)
        inverse_d = (1 / d).tolist()
        mask = torch.zeros_like(Wt, dtype=torch.bool)  # True = pruned
        errors = torch.empty_like(Wt)
        if target.m is None:
            remove = int(i2 * target.sparsity) - int(i1 * target.sparsity)  # a row's share of this block
            if remove:
                scores = (Wt / d.reshape(-1, 1)) ** 2
                mask.scatter_(0, scores.topk(remove, dim=0, largest=False).indices, True)
        for i in range(i2 - i1):
            if target.m is not None and i % target.m == 0:
                scores = (Wt[i : i + target.m] / d[i : i + target.m].reshape(-1, 1)) ** 2
                mask.scatter_(0, i + scores.topk(target.m - target.n, dim=0, largest=False).indices, True)
            torch.mul(Wt[i], mask[i], out=errors[i]).mul_(inverse_d[i])  # (w - q) / d, q = w kept or 0
            Wt[i:].addr_(Hinv1[i, i:], errors[i], alpha=-1)  # the OBS update of this and the later columns
        Wt.masked_fill_(mask, 0)  # the update left ~0 there; exact zeros
        W[:, i1:i2] = Wt.T
        W[:, i2:].addmm_(errors.T, Hinv[i1:i2, i2:], alpha=-1)
        pruned[:, i1:i2] = mask.T
    return W, ~pruned
