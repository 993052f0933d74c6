"""Where a study stands (regrow.study.progress): runs done / total, elapsed time and the ETA."""

from __future__ import annotations

from regrow.study.plan import Job
from regrow.study.progress import Progress


def job(key, kind, steps=None, batch_size=4, seq_len=32):
    if kind == "prune":
        return Job(key, kind, {"out": key, "method": "activation"})
    return Job(key, kind, {"train": {"steps": steps, "batch_size": batch_size}, "data": {"seq_len": seq_len}})


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run(progress, clock, item, seconds, ok=True):
    progress.started(item)
    clock.now += seconds
    progress.finished(item, ok)


def test_eta_per_kind_and_per_token_before_a_kind_has_ended():
    base = job("base", "pretrain", steps=300, batch_size=16)
    prunes = [job(f"prune-{i}", "prune") for i in range(2)]
    trains = [job(f"train-{i}", "train", steps=100, batch_size=8) for i in range(4)]
    clock, lines = Clock(), []
    progress = Progress([base, *prunes, *trains], parallel=1, echo=lines.append, clock=clock)

    run(progress, clock, base, 60.0)
    # per token of the base: 60 s / (300 * 16 * 32) tokens; a training run has 100 * 8 * 32 tokens
    per_train = 60.0 * (100 * 8) / (300 * 16)  # 10 s
    # no pruning run has ended: each costs the mean of all finished runs (the base's 60 s)
    expected = 2 * 60.0 + 4 * per_train
    assert lines[-1] == f"  done   base in 1m00s [1/7 runs, 1m00s elapsed, ETA {expected // 60:.0f}m{expected % 60:02.0f}s]"

    run(progress, clock, prunes[0], 4.0)
    expected = 4.0 + 4 * per_train  # one pruning run left at the pruning mean
    assert lines[-1].endswith(f"[2/7 runs, 1m04s elapsed, ETA 0m{expected:02.0f}s]")
    run(progress, clock, prunes[1], 2.0)
    run(progress, clock, trains[0], 7.0)
    assert lines[-1].endswith(f"[4/7 runs, 1m13s elapsed, ETA 0m{3 * 7.0:02.0f}s]")  # the training mean now
    run(progress, clock, trains[1], 9.0, ok=False)
    assert lines[-2] == "  run    train-1"
    assert lines[-1].startswith("  failed train-1 in 0m09s [5/7 runs, 1m22s elapsed, ETA 0m16s]")  # mean (7+9)/2 x 2
    progress.skipped(trains[2])
    run(progress, clock, trains[3], 8.0)
    assert lines[-1].endswith("[7/7 runs, 1m30s elapsed, none left]")


def test_eta_is_divided_by_the_runs_in_parallel():
    trains = [job(f"train-{i}", "train", steps=10) for i in range(5)]
    clock, lines = Clock(), []
    progress = Progress(trains, parallel=2, echo=lines.append, clock=clock)
    assert progress.eta() == "ETA unknown"
    run(progress, clock, trains[0], 30.0)
    assert lines[-1].endswith("ETA 1m00s]")  # 4 runs x 30 s / 2
