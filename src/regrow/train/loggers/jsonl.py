"""`jsonl`: one JSON object per event in OUT/metrics.jsonl (always on: reports, scaling fits and
`regrow fit --runs` read it). On resume from step s, the events after s are dropped first, so a
resumed run's log equals an uninterrupted one's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from regrow.atomic import write_text_atomic
from regrow.train.loggers.base import LOGGERS, Logger
from regrow.train.metrics import read_metrics


@LOGGERS.register("jsonl")
class JsonlLogger(Logger):
    summary = "OUT/metrics.jsonl, one event per line (always on)"

    def __init__(self, out_dir: Path, config: dict, resume_step: int | None):
        super().__init__(out_dir, config, resume_step)
        self.path = Path(out_dir) / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            kept = [row for row in read_metrics(self.path) if row["step"] <= resume_step]
            write_text_atomic(self.path, "".join(json.dumps(row) + "\n" for row in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")

    def log(self, event: str, step: int, values: dict[str, Any]) -> None:
        self._file.write(json.dumps({"event": event, "step": step, **values}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
