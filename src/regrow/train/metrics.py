"""Run metrics: one JSON object per event in metrics.jsonl, mirrored to TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from regrow.atomic import write_text_atomic
from regrow.errors import RegrowError
from regrow.reading import read_text


class MetricsLogger:
    """Appends events to `out_dir/metrics.jsonl` and `out_dir/tensorboard/`.

    On resume from step s, events after s (written before the interruption) are dropped from
    both, so a resumed run's log equals an uninterrupted one's.
    """

    def __init__(self, out_dir: str | Path, resume_step: int | None = None, tensorboard: bool = True):
        self.path = Path(out_dir) / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            kept = [row for row in read_metrics(self.path) if row["step"] <= resume_step]
            write_text_atomic(self.path, "".join(json.dumps(row) + "\n" for row in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=resume_step)

    def log(self, event: str, step: int, values: dict[str, Any]) -> None:
        row = {"event": event, "step": step, **values}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value) and key != "tokens":
                    tag = key if "/" in key else f"{event}/{key}"
                    self._writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The events of a metrics.jsonl. A last line without its newline is an interrupted write
    (a kill) and is dropped; any other line that is not an event is damage, named."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    text = read_text(path, "metrics file")
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int) or "event" not in row:
                raise ValueError("not an event")
        except ValueError as err:
            if number == len(lines):  # no newline after it: cut off by a kill
                break
            raise RegrowError(f"metrics file {str(path)!r} is damaged at line {number}: {err}") from err
        rows.append(row)
    return rows


class NullLogger:
    """The logger of ranks other than 0: one process writes the run's logs."""

    def log(self, event: str, step: int, values: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass
