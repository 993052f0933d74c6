"""Where a study stands: a line per run started and ended, with runs done / total, the time so
far and an estimate of the time left, divided by the runs in parallel. A remaining run costs the
mean of the finished runs of its kind (pre-training, pruning, training); before one of its kind
has ended, a training run costs its tokens at the seconds per token of the finished training
runs (the base pre-training, usually), anything else the mean of all finished runs."""

from __future__ import annotations

import time
from collections.abc import Callable

from regrow.study.plan import Job
from regrow.train.config import TrainSettings


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def training_tokens(job: Job) -> int | None:
    """The tokens a training job trains on (None for a pruning job)."""
    train, data = job.config.get("train"), job.config.get("data")
    if not isinstance(train, dict) or not isinstance(data, dict):
        return None
    default = TrainSettings()
    return (train.get("steps", default.steps) * train.get("batch_size", default.batch_size)
            * train.get("grad_accum", default.grad_accum) * data.get("seq_len", 1))


class Progress:
    def __init__(self, todo: list[Job], parallel: int, echo: Callable[[str], None], clock=time.monotonic):
        self.remaining = {job.key: (job.kind, training_tokens(job)) for job in todo}
        self.total, self.parallel, self.echo, self.clock = len(todo), parallel, echo, clock
        self.began = clock()
        self.start: dict[str, float] = {}
        self.seconds: dict[str, list[float]] = {}
        self.trained = [0.0, 0]  # seconds and tokens of the finished training runs
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
        tokens = training_tokens(job)
        if ok and tokens:
            self.trained = [self.trained[0] + took, self.trained[1] + tokens]
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
        per_token = self.trained[0] / self.trained[1] if self.trained[1] else None

        def cost(kind: str, tokens: int | None) -> float:
            if kind in mean:
                return mean[kind]
            return tokens * per_token if tokens and per_token is not None else overall

        left = sum(cost(kind, tokens) for kind, tokens in self.remaining.values()) / self.parallel
        return f"ETA {duration(left)}"
