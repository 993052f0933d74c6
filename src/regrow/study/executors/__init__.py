"""Where a study's runs execute, one file each, registered in EXECUTORS: `local` (in this process,
or a pool of processes with --jobs), `submitit-local` and `slurm` (submitit).

Adding an executor = one file with an `@EXECUTORS.register("name")` Executor subclass (built-in
ones are imported here)."""

from regrow.study.executors import local, submitit  # noqa: F401  (registration)
from regrow.study.executors.base import EXECUTORS, Executor

__all__ = ["EXECUTORS", "Executor"]
