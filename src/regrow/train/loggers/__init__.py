"""Where a run's metrics go, one file each, registered in LOGGERS: `jsonl` (metrics.jsonl, always
on: reports and scaling fits read it), `tensorboard`, `wandb` (offline unless WANDB_MODE says
otherwise). `train.loggers` names the ones besides jsonl.

Adding a logger = one file with an `@LOGGERS.register("name")` Logger subclass (built-in ones
are imported here)."""

from regrow.train.loggers import jsonl, tensorboard, wandb  # noqa: F401  (registration)
from regrow.train.loggers.base import LOGGERS, Logger

__all__ = ["LOGGERS", "Logger"]
