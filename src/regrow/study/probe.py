"""The fine-tuning degradation probe (Springer et al. 2025; docs/ALGORITHMS.md §6).

Every checkpoint is fine-tuned with the same recipe (same data, steps, LR, schedule, seed) on
one domain; the probe reports the in-domain gain (fall of that domain's validation loss) and
the out-of-domain change (mean rise of the other domains' losses). The claim under test: the
longer a model was pre-trained, the less it gains and the more it forgets.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from regrow.analysis.sensitivity import pretraining_tokens
from regrow.config import from_dict
from regrow.data.store import TokenStore
from regrow.errors import RegrowError
from regrow.schedules import SCHEDULES
from regrow.train.config import RunConfig
from regrow.train.trainer import train


@dataclass
class ProbeRecipe:
    finetune: str
    steps: int
    lr: float
    batch_size: int = 8
    seq_len: int = 256
    warmup_steps: int = 0
    schedule: str = "constant"
    eval_tokens: int = 65536
    seed: int = 0
    device: str = "auto"

    def validate(self, store: TokenStore) -> None:
        if self.finetune not in store.domain_names:
            raise RegrowError(f"--finetune {self.finetune!r} is not a domain of {str(store.path)!r}; "
                              f"allowed: {', '.join(store.domain_names)}")
        if len(store.domain_names) < 2:
            raise RegrowError("the probe needs a second domain to measure out-of-domain change; the data has one")
        for flag, value, low in (("--steps", self.steps, 1), ("--batch-size", self.batch_size, 1),
                                 ("--seq-len", self.seq_len, 1), ("--eval-tokens", self.eval_tokens, 1),
                                 ("--warmup-steps", self.warmup_steps, 0)):
            if value < low:
                raise RegrowError(f"{flag} is {value}; it must be >= {low}")
        if self.schedule not in SCHEDULES:
            raise RegrowError(f"--schedule {self.schedule!r} is unknown; allowed: {', '.join(SCHEDULES)}")
        if not self.lr > 0:
            raise RegrowError(f"--lr is {self.lr}; it must be > 0")


def probe_one(model_dir: str, data: str, recipe: ProbeRecipe, out_dir: Path) -> dict:
    cfg = from_dict(RunConfig, {
        "out_dir": str(out_dir), "seed": recipe.seed, "model": {"init": model_dir},
        "data": {"path": data, "mixture": {recipe.finetune: 1.0}, "seq_len": recipe.seq_len,
                 "new_domains": [recipe.finetune]},
        "train": {"steps": recipe.steps, "batch_size": recipe.batch_size, "eval_tokens": recipe.eval_tokens,
                  "progress": False, "keep_checkpoints": 1, "device": recipe.device},
        "schedule": {"name": recipe.schedule, "lr_max": recipe.lr, "lr_min": recipe.lr / 10,
                     "warmup_steps": recipe.warmup_steps},
    })
    summary = train(cfg)
    return {"model": model_dir, "tokens": pretraining_tokens(model_dir), "in_domain_gain": summary["adaptation"],
            "out_of_domain_change": summary["forgetting"], "domains": summary["domains"]}


def run_probe(models: list[str], data: str, recipe: ProbeRecipe, work_dir: str | None = None) -> dict:
    """Fine-tune every model the same way; the runs go to work_dir (kept) or a temporary folder."""
    recipe.validate(TokenStore(data))
    with tempfile.TemporaryDirectory(prefix="regrow-probe-") as tmp:
        root = Path(work_dir) if work_dir else Path(tmp)
        results = [probe_one(m, data, recipe, root / f"probe-{i}-{Path(m).parent.name}-{Path(m).name}")
                   for i, m in enumerate(models)]
    return {"kind": "probe", "finetune": recipe.finetune, "steps": recipe.steps, "lr": recipe.lr,
            "schedule": recipe.schedule, "models": results}
