"""The logger interface: a run's events (train, eval, mixture) at their steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from regrow.registry import Registry

LOGGERS: Registry[type[Logger]] = Registry("logger")


class Logger:
    """Opened by rank 0 of a run. `resume_step`: the step a resumed run continues from (None
    for a fresh run); events written after it before an interruption must not show twice."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, out_dir: Path, config: dict, resume_step: int | None):
        self.out_dir = out_dir

    def log(self, event: str, step: int, values: dict[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def scalars(event: str, values: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of an event under their dashboard tags (`eval/code/loss`, `train/loss`)."""
    import math

    return {(key if "/" in key else f"{event}/{key}"): value for key, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and key != "tokens"}
