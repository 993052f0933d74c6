"""`local`: the runs of a wave one after another in this process, or with --jobs N in a pool of
N processes (each with cpu_count / N threads) that die with the study process."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import active_children, get_context

from regrow.study.execute import execute
from regrow.study.executors.base import EXECUTORS, Executor


def _die_with_parent(parent: int) -> None:
    """Worker initializer: the kernel kills this worker when the study process dies (even by
    SIGKILL), so no run goes on writing into a study nobody is running."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    summary = "this machine: in this process, or --jobs N processes"

    def run(self, todo, started, finished) -> None:
        if self.parallel == 1:
            for job in todo:
                started(job)
                try:
                    outcome = execute(job.kind, job.config)
                except Exception as err:  # noqa: BLE001  (one failing run must not stop the study)
                    traceback.print_exc()
                    outcome = err
                finished(job, outcome)
            return
        threads = max(1, (os.cpu_count() or 1) // self.parallel)
        # workers die with this process (SIGKILL included); Ctrl-C terminates them at once
        pool = ProcessPoolExecutor(max_workers=self.parallel, mp_context=get_context("spawn"),
                                   initializer=_die_with_parent, initargs=(os.getpid(),))
        try:
            futures = {}
            for job in todo:
                started(job)
                futures[pool.submit(execute, job.kind, job.config, threads)] = job
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except Exception as err:  # noqa: BLE001  (one failing run must not stop the study)
                    outcome = err
                finished(futures[future], outcome)
        except KeyboardInterrupt:
            for process in active_children():
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
