"""Named points where a fault test can hold a process, so it kills or interrupts it at an exact
moment instead of racing it (a race passes or fails by the machine's speed).

Inactive unless the environment asks: `REGROW_PAUSE_AT="POINT@N[,POINT@N...]"` and
`REGROW_PAUSE_DIR=DIR`. The N-th time this process reaches POINT it creates `DIR/POINT@N.PID`
and waits there while that file exists: the test deletes it to let the process go on, or ends
the process with a signal (SIGKILL, or SIGINT as KeyboardInterrupt). Child processes inherit
the variables and count their own visits.

Points: `train-step` (an optimizer step done, before its callbacks: not yet checkpointed),
`checkpoint-shards` (a checkpoint's shards written into its temporary folder, not published),
`model-export` (an HF folder's files written into its temporary folder, not published),
`prepare-progress` (a `data prepare` progress file saved).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

_visits: Counter[str] = Counter()  # per process, by design: what the N of POINT@N counts


def pause_point(name: str) -> None:
    spec = os.environ.get("REGROW_PAUSE_AT")
    if not spec:
        return
    _visits[name] += 1
    if f"{name}@{_visits[name]}" not in {item.strip() for item in spec.split(",")}:
        return
    folder = Path(os.environ.get("REGROW_PAUSE_DIR", "."))
    marker = folder / f"{name}@{_visits[name]}.{os.getpid()}"
    marker.touch()
    while marker.exists():
        time.sleep(0.01)
