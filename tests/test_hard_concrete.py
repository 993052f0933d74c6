"""The hard-concrete gates and the Lagrangian targets of the sheared method (docs/ALGORITHMS.md §1)."""

from __future__ import annotations

import math

import torch

from regrow.compress.methods.sheared import LOG_ALPHA_RANGE, HardConcrete, lr_schedule, mask_layout
from regrow.compress.shape import ArchShape


def test_kept_probability_matches_sampling():
    g = torch.Generator().manual_seed(0)
    gate = HardConcrete(1, 5, 2 / 3, 0.0, g)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([[-3.0, -1.0, 0.0, 1.0, 3.0]]))
    samples = torch.stack([gate.sample(g) for _ in range(20000)])
    empirical = (samples > 0).float().mean(0)
    torch.testing.assert_close(empirical, gate.kept_probability().detach(), atol=0.015, rtol=0)
    assert samples.min() == 0.0 and samples.max() == 1.0  # stretched and clamped: exact zeros and ones
    # P(z > 0) = 1 - sigmoid(beta * ln(-l / r) - log_alpha)
    expected = 1 - torch.sigmoid(torch.tensor(2 / 3 * math.log(0.1 / 1.1)) - gate.log_alpha.detach())
    torch.testing.assert_close(gate.kept_probability().detach(), expected)


def test_init_keeps_everything_and_clamp_range():
    gate = HardConcrete(3, 100, 2 / 3, 5.0, torch.Generator().manual_seed(0))
    gate.clamp_()
    assert gate.log_alpha.max() <= LOG_ALPHA_RANGE[1] + 1e-6
    assert float(gate.expected_sparsity().detach().max()) < 0.01
    deterministic = gate.deterministic()  # sigmoid(log_alpha / beta * 0.8)
    torch.testing.assert_close(deterministic, torch.sigmoid(gate.log_alpha.detach() / (2 / 3) * 0.8))


def test_mask_layout_targets_and_schedule():
    source = ArchShape(32, 4096, 32, 32, 11008, 128)  # LLaMA2-7B -> Sheared-LLaMA-2.7B
    target = ArchShape(32, 2560, 20, 20, 6912, 128)
    layout = mask_layout(source, target)
    assert set(layout) == {"head", "mlp", "hidden"}  # no layer mask: depth is unchanged
    assert layout["head"] == (32, 32, 1 - 20 / 32)
    assert layout["hidden"] == (1, 4096, 1 - 2560 / 4096)
    factor = lr_schedule(100, 0.1, 0.1)
    assert factor(1) == 0.1 and factor(10) == 1.0
    assert math.isclose(factor(100), 0.1)
    # between: cosine from 1 to 0.1 over steps 10..100, written out here
    assert math.isclose(factor(55), 0.1 + 0.5 * 0.9 * (1 + math.cos(math.pi * 45 / 90)))
