"""Per-domain validation loss: fixed, non-overlapping windows of each domain's validation split."""

from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from regrow.data.store import TokenStore
from regrow.world import World


def causal_lm_loss(model, inputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy; logits are upcast to float32 for a stable softmax."""
    logits = model(input_ids=inputs, use_cache=False).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction)


def validation_windows(tokens: np.ndarray, seq_len: int, max_tokens: int) -> np.ndarray:
    """Rows of seq_len + 1 tokens (inputs plus the shifted target), at most max_tokens targets."""
    window = min(seq_len, len(tokens) - 1)
    if window < 1:
        return np.zeros((0, 2), dtype=np.int64)
    rows = min((len(tokens) - 1) // window, max(1, max_tokens // window))
    starts = np.arange(rows) * window
    return np.stack([np.asarray(tokens[s : s + window + 1], dtype=np.int64) for s in starts])


@torch.no_grad()
def evaluate_domains(
    model,
    store: TokenStore,
    domains: list[str],
    seq_len: int,
    batch_size: int,
    max_tokens: int,
    device: torch.device,
    autocast=nullcontext,
    world: World | None = None,
) -> dict[str, dict[str, float]]:
    """Mean loss, perplexity and number of target tokens per domain.

    With several processes each takes every world_size-th window and the sums are added up; all
    ranks run the same number of forward passes (a rank out of windows runs one with weight 0),
    as a sharded model needs every rank in every forward.
    """
    world = world or World()
    was_training = model.training
    model.eval()
    results = {}
    for name in domains:
        rows = validation_windows(store.domain(name).tokens("validation"), seq_len, max_tokens)
        mine = rows[world.rank :: world.world_size]
        batches = math.ceil(math.ceil(len(rows) / world.world_size) / batch_size)
        sums = torch.zeros(2, dtype=torch.float64)  # loss sum, target tokens
        for i in range(batches):
            chunk, weight = mine[i * batch_size : (i + 1) * batch_size], 1.0
            if len(chunk) == 0:
                chunk, weight = rows[:1], 0.0
            batch = torch.from_numpy(chunk).to(device)
            with autocast():
                loss = causal_lm_loss(model, batch[:, :-1], batch[:, 1:], reduction="sum")
            sums += torch.tensor([float(loss), batch[:, 1:].numel()], dtype=torch.float64) * weight
        total, count = world.sum_(sums.to(device)).tolist()
        mean = total / count if count else float("nan")
        results[name] = {"loss": mean, "perplexity": math.exp(min(mean, 50.0)), "tokens": int(count)}
    model.train(was_training)
    return results
