"""`slurm` and `submitit-local`: every run of a wave submitted through submitit (a Slurm job
each, or a local process that submitit manages), with `executor_params` passed through
(timeout_min, slurm_partition, gpus_per_node, ...)."""

from __future__ import annotations

import shutil

from regrow.errors import RegrowError
from regrow.study.execute import execute
from regrow.study.executors.base import EXECUTORS, Executor


class SubmititExecutor(Executor):
    cluster = ""

    @classmethod
    def check(cls) -> None:
        try:
            import submitit  # noqa: F401
        except ImportError as err:
            raise RegrowError(f"executor {cls.name!r} needs submitit: pip install 'regrow[slurm]'") from err

    def run(self, todo, started, finished) -> None:
        import submitit

        executor = submitit.AutoExecutor(folder=str(self.folder / "submitit"), cluster=self.cluster)
        executor.update_parameters(**self.params)
        handles = []
        try:
            for job in todo:
                started(job)
                handles.append((job, executor.submit(execute, job.kind, job.config)))
            for job, handle in handles:
                try:
                    outcome = handle.result()
                except Exception as err:  # noqa: BLE001  (the job's own error, re-raised by submitit)
                    outcome = err
                finished(job, outcome)
        except KeyboardInterrupt:
            for _, handle in handles:
                handle.cancel(check=False)
            raise


@EXECUTORS.register("slurm")
class SlurmExecutor(SubmititExecutor):
    summary = "a Slurm job per run (submitit; sbatch on PATH)"
    cluster = "slurm"

    @classmethod
    def check(cls) -> None:
        super().check()
        if shutil.which("sbatch") is None:
            raise RegrowError("executor 'slurm' needs Slurm's sbatch on PATH; on a single machine use --executor local")


@EXECUTORS.register("submitit-local")
class SubmititLocalExecutor(SubmititExecutor):
    summary = "a local process per run, managed by submitit (to try a Slurm setup)"
    cluster = "local"
