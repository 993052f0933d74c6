"""`sparsegpt` (Frantar & Alistarh 2023): per linear layer, H = (2/n) X^T X + lambda I (lambda =
percdamp x mean diag), the upper Cholesky factor of H^-1; input columns in blocks: inside a
block the mask is chosen by w^2 / [H^-1]_jj^2, then each column's pruning error is spread over
the block's later columns (OBS update) and, after the block, over the remaining columns.
Layers in order, each calibrated on the already-pruned layers' outputs.

Where regrow and the released code differ: the code picks the block's unstructured mask by one
threshold over the whole block (rows x columns), so rows end with different sparsities; regrow
picks it per row (each row removes its share of the block's columns), the same per-row
sparsity as Wanda and magnitude-sparse, so the methods are compared at equal sparsity per row.
N:M is as in the code (per group of M columns of a row)."""

import torch

from regrow.compress.methods.base import SparseMethod, register
from regrow.compress.sparsity import (
    LayerByLayer,
    SparseResult,
    SparsityTarget,
    feed_inputs,
    sparse_linears,
)
from regrow.errors import RegrowError


@register("sparsegpt")
class SparseGPT(SparseMethod):
    summary = "one-shot OBS weight update with the layer Hessian of calibration data (SparseGPT)"
    passes = 2

    @torch.no_grad()
    def sparsify(self, ctx) -> SparseResult:
        options = ctx.cfg.sparsegpt
        runner = LayerByLayer(ctx.model, ctx.adapter, ctx.batches, ctx.autocast)
        masks, errors = {}, {}
        for index, linears in sparse_linears(ctx.model, ctx.adapter).items():
            hessians = _Hessians()
            feed_inputs(runner, index, linears, hessians.add)
            before = after = 0.0
            for name, module in linears.items():
                weight = module.weight.float()
                new, kept = solve(weight, hessians.of[name], ctx.target, options.block_size, options.percdamp, name)
                delta = weight - new
                before += float(torch.einsum("ij,jk,ik->", weight, hessians.of[name], weight))
                after += float(torch.einsum("ij,jk,ik->", delta, hessians.of[name], delta))
                module.weight.copy_(new.to(module.weight.dtype))
                masks[f"{name}.weight"] = kept
            errors[index] = after / before if before else 0.0
            runner.advance(index)
        return SparseResult(masks, {"calibration_tokens": sum(ids.numel() for ids in ctx.batches),
                                    "block_size": options.block_size, "percdamp": options.percdamp,
                                    "relative_reconstruction_error": errors})


class _Hessians:
    """Per linear layer: H = (2/n) sum of x x^T over its n input tokens, kept as a running mean."""

    def __init__(self):
        self.of: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, x: torch.Tensor) -> None:
        x = x.float()
        n, seen = x.shape[0], self.counts.get(name, 0)
        H = self.of.get(name, torch.zeros(x.shape[1], x.shape[1], device=x.device))
        H *= seen / (seen + n)
        self.counts[name] = seen + n
        x = x * (2.0 / self.counts[name]) ** 0.5
        self.of[name] = H + x.T @ x


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
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)
        errors = torch.zeros_like(W1)
        mask1 = torch.zeros_like(W1, dtype=torch.bool)
        if target.m is None:
            remove = int(i2 * target.sparsity) - int(i1 * target.sparsity)  # a row's share of this block
            if remove:
                scores = W1**2 / d.reshape(1, -1) ** 2
                mask1.scatter_(1, scores.topk(remove, dim=1, largest=False).indices, True)
        for i in range(i2 - i1):
            if target.m is not None and i % target.m == 0:
                scores = W1[:, i : i + target.m] ** 2 / d[i : i + target.m].reshape(1, -1) ** 2
                mask1.scatter_(1, i + scores.topk(target.m - target.n, dim=1, largest=False).indices, True)
            w = W1[:, i]
            q = torch.where(mask1[:, i], torch.zeros_like(w), w)
            err = (w - q) / d[i]
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            W1[:, i] = q
            errors[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= errors @ Hinv[i1:i2, i2:]
        pruned[:, i1:i2] = mask1
    return W, ~pruned
