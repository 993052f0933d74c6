"""The executor interface: run one wave of independent jobs, reporting each outcome."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from regrow.registry import Registry
from regrow.study.plan import Job

EXECUTORS: Registry[type[Executor]] = Registry("executor")

Outcome = tuple  # (result, FLOPs) of a finished job, or the exception it raised


class Executor:
    """`check` refuses what the machine lacks before any work; `run` executes `todo` (calling
    `started(job)` when a job is handed over and `finished(job, outcome)` when it ends)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, folder: Path, parallel: int, params: dict | None):
        self.folder, self.parallel, self.params = folder, parallel, params or {}

    @classmethod
    def check(cls) -> None:
        pass

    def run(self, todo: list[Job], started: Callable[[Job], None],
            finished: Callable[[Job, Outcome | BaseException], None]) -> None:
        raise NotImplementedError
