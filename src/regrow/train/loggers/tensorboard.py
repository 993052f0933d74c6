"""`tensorboard`: OUT/tensorboard/ event files (a resume purges the events after its step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regrow.train.loggers.base import LOGGERS, Logger, scalars


@LOGGERS.register("tensorboard")
class TensorBoardLogger(Logger):
    summary = "OUT/tensorboard/ (tensorboard --logdir OUT)"

    def __init__(self, out_dir: Path, config: dict, resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        super().__init__(out_dir, config, resume_step)
        self._writer = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=resume_step)

    def log(self, event: str, step: int, values: dict[str, Any]) -> None:
        for tag, value in scalars(event, values).items():
            self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self._writer.close()
