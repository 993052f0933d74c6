"""Faults: kill -9 during training (saves and the final export included), a full disk, a
read-only folder, a study whose parent process dies or is interrupted.

What must hold: a resumed run is bit-identical to an uninterrupted one and leaves no temporary
folder; a full disk or a read-only folder gives exit 1 and one line naming the path and the OS
reason, with the last good checkpoint intact; no study worker outlives the study process.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import recipe
from safetensors.torch import load_file

from regrow.cli.main import main
from regrow.config import from_dict
from regrow.train.checkpoint import check_shards, list_checkpoints
from regrow.train.config import RunConfig
from regrow.train.metrics import read_metrics
from regrow.train.trainer import train

STEPS = 10


def fault_recipe(tokenizer_dir, data_dir, out: Path) -> dict:
    data = recipe(tokenizer_dir, data_dir, out)
    data["train"].update(steps=STEPS, checkpoint_every=1, keep_checkpoints=2, eval_every=3, eval_tokens=256)
    data["schedule"]["total_steps"] = STEPS
    return data


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def same_run(a: Path, b: Path) -> None:
    """Losses, evaluations, final weights and compute counters of two runs are identical."""
    rows = [[r for r in read_metrics(run) if r["event"] in ("train", "eval")] for run in (a, b)]
    strip = [[{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rs] for rs in rows]
    assert strip[0] == strip[1]
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = (json.loads((run / "summary.json").read_text()) for run in (a, b))
    for key in ("eval_tokens", "tokens_per_domain"):
        assert sa["compute"][key] == sb["compute"][key], key
    assert sa["compute"]["flops"]["eval"] == sb["compute"]["flops"]["eval"]


def leftovers(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def reference(tokenizer_dir, data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    train(from_dict(RunConfig, fault_recipe(tokenizer_dir, data_dir, out)))
    return out


# ---- kill -9 ---------------------------------------------------------------------------------

def paused_env(folder: Path, *points: str) -> dict[str, str]:
    """The environment that holds a regrow process at the named pause points (regrow.pause_points)."""
    folder.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "REGROW_PAUSE_AT": ",".join(points), "REGROW_PAUSE_DIR": str(folder)}


def wait_paused(folder: Path, point: str, proc, count: int = 1, timeout: float = 300.0) -> list[Path]:
    """Wait until `count` processes hold at `point` (their marker files); fail if `proc` ends first.
    The processes sleep there, so what happens next does not depend on the machine's speed."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = sorted(folder.glob(f"{point}.*"))
        if len(found) >= count:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before reaching {point}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"no process reached {point} within {timeout:.0f} s")


def kill_plan(seed: int = 0) -> list[tuple[str, str]]:
    """12 kills of the 10-step run (a checkpoint after every step): 4 while a checkpoint's shards
    are being written, 7 at seeded moments of training, the last while the final model is
    exported. Each (kind, POINT@N) holds the process at its N-th visit of POINT: the kills before
    it left N - 1 more checkpoints, so the plan keeps the run short of its end until the export."""
    rng = random.Random(seed)
    kinds = ["save", "random", "random", "save", "random", "random", "save", "random", "random", "save", "random"]
    plan, progress = [], 0
    for kind in kinds:
        point = "checkpoint-shards" if kind == "save" else rng.choice(["train-step", "checkpoint-shards"])
        visit = rng.choice([1, 2]) if progress < STEPS - 2 else 1
        progress += visit - 1
        plan.append((kind, f"{point}@{visit}"))
    return [*plan, ("export", "model-export@1")]


@pytest.mark.slow
def test_kill_9_at_planned_moments_resumes_bit_identically(reference, tokenizer_dir, data_dir, tmp_path):
    """12 kills -9 at exact moments (held there by pause points, whatever the machine's speed);
    each time `--auto-resume` goes on from the last complete checkpoint, and the finished run
    is bit-identical to one never killed."""
    out = tmp_path / "run"
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(fault_recipe(tokenizer_dir, data_dir, out)))
    plan = kill_plan()
    steps_done = []
    for number, (kind, point) in enumerate(plan):
        pauses = tmp_path / f"pauses-{number}"
        proc = subprocess.Popen([sys.executable, "-m", "regrow", "train", str(path), "--auto-resume"],
                                env=paused_env(pauses, point), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_paused(pauses, point, proc)
        if kind == "save":
            assert any((out / "checkpoints").glob(".step_*.tmp/shards/*.distcp"))  # killed inside the save
        if kind == "export":
            assert any(out.glob(".model.*.tmp/model.safetensors")) and not (out / "summary.json").exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        steps_done.append(len(list_checkpoints(out / "checkpoints")) and int(list_checkpoints(out / "checkpoints")[-1].name[5:]))
    assert steps_done == sorted(steps_done) and steps_done[-2] < STEPS == steps_done[-1], steps_done
    assert subprocess.run([sys.executable, "-m", "regrow", "train", str(path), "--auto-resume"],
                          capture_output=True).returncode == 0
    same_run(reference, out)
    assert leftovers(out) == []
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step_00000009", "step_00000010"]


def test_kill_during_final_export_does_not_count_evaluation_twice(reference, tokenizer_dir, data_dir, tmp_path,
                                                                  monkeypatch):
    """A run killed after its last checkpoint, while writing model/: the resume exports without
    evaluating again, so compute.eval_tokens equals the uninterrupted run's."""
    import regrow.train.trainer as trainer_module

    out = tmp_path / "run"
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(fault_recipe(tokenizer_dir, data_dir, out)))
    real_save = trainer_module.save_model

    def killed(model, tokenizer, folder, *args, **kwargs):
        if Path(folder).name == "model":
            (out / ".model.abc.tmp").mkdir()  # what a kill half-way through the export leaves
            raise KeyboardInterrupt
        return real_save(model, tokenizer, folder, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "save_model", killed)
    assert main(["train", str(path)]) == 130
    monkeypatch.setattr(trainer_module, "save_model", real_save)
    assert main(["train", str(path), "--resume"]) == 0
    same_run(reference, out)
    assert leftovers(out) == []


def test_resume_removes_stale_leftovers_and_keeps_k_checkpoints(reference, tokenizer_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    data = fault_recipe(tokenizer_dir, data_dir, out)
    data["train"]["steps"] = 6
    train(from_dict(RunConfig, data))
    ckpts = out / "checkpoints"
    # what kills leave: a half-written checkpoint, one half-deleted (no state.json), a temporary export,
    # a checkpoint too many (killed between publishing the new one and deleting the oldest)
    (ckpts / ".step_00000007.tmp" / "shards").mkdir(parents=True)
    (ckpts / "step_00000003").mkdir()
    (ckpts / "step_00000003" / "rng.pt").write_bytes(b"x")
    (out / ".model.xyz.tmp").mkdir()
    (out / ".summary.json.abc.tmp").write_text("{")
    import shutil

    shutil.copytree(ckpts / "step_00000005", ckpts / "step_00000004")
    assert main(["train", str(_write(tmp_path, data)), "--resume", "--set", f"train.steps={STEPS}"]) == 0
    same_run(reference, out)
    assert leftovers(out) == []
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_00000009", "step_00000010"]


def _write(tmp_path, data) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ---- full disk, read-only folder ------------------------------------------------------------

@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """A tmpfs of `size` at `folder` when this machine lets us mount one, else None."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0 if hasattr(os, "geteuid") and os.geteuid() == 0 else False
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_full_disk_names_the_path_and_keeps_the_last_good_checkpoint(reference, tokenizer_dir, data_dir, tmp_path,
                                                                     capsys, monkeypatch):
    with small_disk(tmp_path / "disk", "1200k") as disk:
        root = disk or tmp_path / "disk"
        out = root / "run"
        path = _write(tmp_path, fault_recipe(tokenizer_dir, data_dir, out))
        if disk is None:  # no tmpfs here: the second checkpoint's writes fail as on a full disk
            import errno

            import regrow.train.checkpoint as ckpt

            real = ckpt.write_model_files

            def full(model, tokenizer, folder, *args, **kwargs):
                if "step_00000002" in str(folder):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real(model, tokenizer, folder, *args, **kwargs)

            monkeypatch.setattr(ckpt, "write_model_files", full)
        capsys.readouterr()
        assert main(["train", str(path)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "No space left on device" in err and str(out / "checkpoints") in err, err
        good = list_checkpoints(out / "checkpoints")
        assert good and f"step_{int(good[-1].name[5:]) + 1:08d}" in err  # the next save failed, named
        check_shards(good[-1])  # the last good one is complete: every shard there and long enough
        assert leftovers(out) == []
        if disk is not None:
            subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        else:
            monkeypatch.undo()
        assert main(["train", str(path), "--resume"]) == 0
        same_run(reference, out)


def test_read_only_folder_exits_1_and_changes_nothing(reference, tmp_path, capsys):
    with small_disk(tmp_path / "ro", "16m") as disk:
        if disk is None:
            pytest.skip("cannot mount a read-only file system here; the writability check is covered by the "
                        "bad-input suite's permission-free cases")  # root ignores chmod, so no fallback exists
        import shutil

        run = disk / "run"
        shutil.copytree(reference, run)
        data = yaml.safe_load((run / "config.yaml").read_text())
        data.pop("resolved")
        data["out_dir"] = str(run)
        data["train"]["steps"] = STEPS + 2
        data["schedule"]["total_steps"] = STEPS + 2
        path = _write(tmp_path, data)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
        capsys.readouterr()
        assert main(["train", str(path), "--resume"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(run) in err and "not writable" in err, err
        assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


# ---- study processes ---------------------------------------------------------------------------

TARGET = {"hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 48}


def _study(tmp_path, family_models, data_dir) -> Path:
    study = {
        "out_dir": str(tmp_path / "study"),
        "source": {"model": str(family_models["llama"])},
        "data": {"path": str(data_dir), "old": ["prose"], "new": ["code"], "seq_len": 32},
        "grid": {"method": ["activation"], "target": [TARGET],
                 "schedule": [{"name": "cosine", "lr_max": 1e-3, "lr_min": 1e-4, "warmup_steps": 1}],
                 "replay": [0.0, 0.25], "tokens": [8192], "seed": [0]},
        "controls": {"scratch": True, "source": False},
        "prune": {"calibration_samples": 8, "batch_size": 4},
        "train": {"batch_size": 4, "eval_tokens": 256, "log_every": 1, "checkpoint_every": 4},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def _children(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc)."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    if int(child) not in found:
                        found.add(int(child))
                        todo.append(int(child))
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
                alive.add(pid)
    return alive


def _start_study(path: Path, tmp_path: Path):
    """The study with --jobs 2, held once both workers are inside a training run (each at its
    second optimizer step): the interrupt or kill then lands mid-run on any machine."""
    pauses = tmp_path / "pauses"
    proc = subprocess.Popen([sys.executable, "-m", "regrow", "study", str(path), "--jobs", "2"],
                            env=paused_env(pauses, "train-step@2"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    held = wait_paused(pauses, "train-step@2", proc, count=2)
    assert {int(p.name.rsplit(".", 1)[1]) for p in held} <= _children(proc.pid)
    return proc


def _statuses(tmp_path):
    with sqlite3.connect(tmp_path / "study" / "index.sqlite") as db:
        return dict(db.execute("SELECT key, status FROM runs").fetchall())


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_study_leaves_no_worker_alive(tmp_path, family_models, data_dir):
    path = _study(tmp_path, family_models, data_dir)
    proc = _start_study(path, tmp_path)
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # the parent alone, as the OOM killer or `kill -9 PID` does
    proc.wait()
    deadline = time.time() + 3  # the kernel kills them at once; a run itself would last longer
    while _alive(workers) and time.time() < deadline:
        time.sleep(0.1)
    assert _alive(workers) == set(), "workers outlived the study process"
    assert main(["study", str(path), "--jobs", "2"]) == 0  # the index is consistent: the rest runs, nothing twice
    assert set(_statuses(tmp_path).values()) == {"done"}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_interrupted_study_stops_everything_within_seconds(tmp_path, family_models, data_dir):
    path = _study(tmp_path, family_models, data_dir)
    proc = _start_study(path, tmp_path)
    workers = _children(proc.pid)
    started = time.time()
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C
    assert proc.wait(timeout=30) == 130
    deadline = time.time() + 10
    while _alive(workers) and time.time() < deadline:
        time.sleep(0.1)
    assert _alive(workers) == set()
    assert time.time() - started < 15
    assert "running" not in set(_statuses(tmp_path).values())  # interrupted runs went back to pending
