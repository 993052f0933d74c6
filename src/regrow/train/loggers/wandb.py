"""`wandb`: Weights & Biases, offline by default (OUT/wandb/offline-run-*, upload later with
`wandb sync`); set WANDB_MODE=online and WANDB_PROJECT to log live. The run's id is derived
from its folder, so a resumed run continues the same W&B run."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from regrow.errors import RegrowError
from regrow.train.loggers.base import LOGGERS, Logger, scalars


@LOGGERS.register("wandb")
class WandbLogger(Logger):
    summary = "Weights & Biases, offline unless WANDB_MODE=online (pip install 'regrow[wandb]')"

    def __init__(self, out_dir: Path, config: dict, resume_step: int | None):
        super().__init__(out_dir, config, resume_step)
        try:
            import wandb
        except ImportError as err:
            raise RegrowError("train.loggers names wandb, which is not installed: pip install 'regrow[wandb]'") from err
        folder = Path(out_dir).resolve()
        run_id = hashlib.sha1(str(folder).encode()).hexdigest()[:16]
        _wait_for_a_fresh_run_folder(folder / "wandb", run_id)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "regrow"), dir=str(folder), config=config, name=folder.name,
            id=run_id, resume="allow",
            mode=os.environ.get("WANDB_MODE", "offline"),
            settings=wandb.Settings(console="off", silent=True, disable_git=True, save_code=False, x_disable_stats=True),
        )

    def log(self, event: str, step: int, values: dict[str, Any]) -> None:
        self.run.log(scalars(event, values), step=step)

    def close(self) -> None:
        self.run.finish()


def _wait_for_a_fresh_run_folder(wandb_dir: Path, run_id: str) -> None:
    """W&B names a run's local folder by its start second and id: a resume started within the
    same second as the run it continues would overwrite that run's log, so wait for the next second."""
    while any((wandb_dir / f"{mode}-{datetime.now():%Y%m%d_%H%M%S}-{run_id}").exists() for mode in ("run", "offline-run")):
        time.sleep(0.05)
