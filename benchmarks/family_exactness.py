"""Per family: the largest difference between the masked model (deterministic masks, soft values
folded) and the sliced HF model's logits, on the test suite's tiny random models and targets
(tests/conftest.py), pruning layers, hidden size, heads and MLP channels at once.

    python benchmarks/family_exactness.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import FAMILY_CONFIGS, FAMILY_TARGETS, make_family_model  # noqa: E402
from test_prune_exact import random_masks  # noqa: E402

from regrow.compress.families import adapter_for  # noqa: E402
from regrow.compress.inmemory import logits_of  # noqa: E402
from regrow.compress.select import select  # noqa: E402
from regrow.compress.slicing import slice_model  # noqa: E402


def max_logit_diff(family: str, vocab: int = 97) -> dict:
    model = make_family_model(family, vocab).eval()
    adapter = adapter_for(model.config)
    source = adapter.shape(model.config)
    target = source.replace(**adapter.complete_spec(FAMILY_TARGETS[family], source))
    scores, values = random_masks(source, seed=1)
    masks = select(scores, source, target, values)
    ids = torch.randint(0, vocab, (2, 24), generator=torch.Generator().manual_seed(2))
    masked = logits_of(model, ids, adapter, masks)
    sliced = logits_of(slice_model(model, adapter, masks, target), ids)
    return {"family": family, "model_type": model.config.model_type, "target": target.describe(),
            "max_abs_logit_diff": float((masked - sliced).abs().max()), "max_abs_logit": float(masked.abs().max())}


def main() -> None:
    for family in FAMILY_CONFIGS:
        print(json.dumps(max_logit_diff(family)))


if __name__ == "__main__":
    main()
