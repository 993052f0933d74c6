"""Where a study stands: a line per run started and ended, with runs done / total, the time so
far and an estimate of the time left (each remaining run costs the mean of the finished runs of
its kind — pre-training, pruning, training — or of all finished runs before one of its kind has
ended; divided by the runs in parallel)."""

from __future__ import annotations

import time
from collections.abc import Callable

from regrow.study.plan import Job


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    def __init__(self, todo: list[Job], parallel: int, echo: Callable[[str], None], clock=time.monotonic):
        self.remaining = {job.key: job.kind for job in todo}
        self.total, self.parallel, self.echo, self.clock = len(todo), parallel, echo, clock
        self.began = clock()
        self.start: dict[str, float] = {}
        self.seconds: dict[str, list[float]] = {}
        self.ended = 0

    def started(self, job: Job) -> None:
        self.start[job.key] = self.clock()
        self.echo(f"  run    {job.key}")

    def skipped(self, job: Job) -> None:
        """A run that cannot start (a run it needs failed): it counts as ended."""
        if self.remaining.pop(job.key, None) is not None:
            self.ended += 1

    def finished(self, job: Job, ok: bool) -> None:
        now = self.clock()
        took = now - self.start.pop(job.key, now)
        self.seconds.setdefault(job.kind, []).append(took)
        self.remaining.pop(job.key, None)
        self.ended += 1
        status = "done  " if ok else "failed"
        self.echo(f"  {status} {job.key} in {duration(took)} [{self.ended}/{self.total} runs, "
                  f"{duration(now - self.began)} elapsed, {self.eta()}]")

    def eta(self) -> str:
        if not self.remaining:
            return "none left"
        every = [s for kind in self.seconds.values() for s in kind]
        if not every:
            return "ETA unknown"
        mean = {kind: sum(v) / len(v) for kind, v in self.seconds.items()}
        overall = sum(every) / len(every)
        left = sum(mean.get(kind, overall) for kind in self.remaining.values()) / self.parallel
        return f"ETA {duration(left)}"
