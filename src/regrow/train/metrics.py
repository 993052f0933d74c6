"""Reading a run's metrics.jsonl (written by the jsonl logger, train/loggers/jsonl.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from regrow.errors import UnreadableFile
from regrow.reading import read_text


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
            raise UnreadableFile(f"metrics file {str(path)!r} is damaged at line {number}: {err}") from err
        rows.append(row)
    return rows
