"""`local`: the runs of a wave one after another in this process, or with --jobs N in a pool of
N processes (each with cpu_count / N threads) that die with the study process. A wave of one
run (the pre-training) runs in this process with every core."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import active_children, get_context

from regrow.study.execute import execute
from regrow.study.executors.base import EXECUTORS, Executor


def die_with_parent(parent: int) -> None:
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
        workers = min(self.parallel, len(todo))
        if workers <= 1:  # one run at a time: in this process, with every core
            for job in todo:
                started(job)
                try:
                    outcome = execute(job.kind, job.config)
                except Exception as err:  # noqa: BLE001  (one failing run must not stop the study)
                    traceback.print_exc()
                    outcome = err
                finished(job, outcome)
            return
        threads = max(1, (os.cpu_count() or 1) // workers)
        # workers die with this process (SIGKILL included); Ctrl-C terminates them at once
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                   initializer=die_with_parent, initargs=(os.getpid(),))
        try:
            waiting, running = list(todo), {}
            while waiting or running:
                while waiting and len(running) < workers:  # hand over a run when a worker is free: "run" means running
                    job = waiting.pop(0)
                    started(job)
                    running[pool.submit(execute, job.kind, job.config, threads)] = job
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        outcome = future.result()
                    except Exception as err:  # noqa: BLE001  (one failing run must not stop the study)
                        outcome = err
                    finished(running.pop(future), outcome)
        except KeyboardInterrupt:
            for process in active_children():
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
