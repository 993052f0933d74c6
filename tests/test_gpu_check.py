"""The CPU-checkable parts of benchmarks/gpu_check.sh: its arguments, its plan, how it reads each
step's output into the summary, and how it survives a failing or slow step."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def sh(*args: str) -> subprocess.CompletedProcess:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def test_dry_run_lists_the_steps_in_order():
    result = sh("--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["tests", "train", "prune", "load"]
    assert "-m gpu" in lines[0] and "tests/test_gpu.py" in lines[0]
    assert "train_throughput.py --device cuda" in lines[1]
    only = sh("--only", "load,prune", "--dry-run")
    assert [line.split()[0] for line in only.stdout.strip().splitlines()] == ["prune", "load"]


@pytest.mark.parametrize("args,message", [
    (["--only", "tests,bogus"], "gpu_check: error: --only 'tests,bogus': unknown step(s) bogus; allowed: tests, train, prune, load"),
    (["--budget-s", "0"], "gpu_check: error: --budget-s 0: must be > 0 seconds"),
])
def test_bad_arguments(args, message):
    result = sh(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [message]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_cuda_it_says_so_in_one_line(tmp_path):
    result = sh("--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gpu_check: error: no CUDA device is visible (torch.cuda.is_available() is False); run this on a GPU machine"]
    assert not (tmp_path / "out").exists()


def test_test_counts_come_from_pytests_junit_report(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_a(): pass\n"
        "def test_b(): pass\n"
        "def test_c(): assert False\n"
        "@pytest.mark.skip(reason='x')\n"
        "def test_d(): pass\n")
    xml = tmp_path / "tests.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_sample.py"),
                    f"--junitxml={xml}"], capture_output=True, cwd=tmp_path)
    assert gpu_check.tests_figures(xml) == "2 passed, 1 failed, 1 skipped (test_c)"


def test_train_prune_and_load_figures():
    train = {"device": "NVIDIA H200", "regrow+compile": {"tokens_per_s_per_process": 12345.6, "mfu": 0.412, "ratio_vs_plain": 1.05},
             "plain": {"tokens_per_s_per_process": 11757.7, "mfu": 0.392, "ratio_vs_plain": 1.0}}
    assert gpu_check.train_figures("compiling...\n" + json.dumps(train, indent=2)) == (
        "12,346 tok/s, MFU 41.2%; plain loop 11,758 tok/s, MFU 39.2%, regrow/plain 1.05")
    prune = {"forward_seconds": 0.5, "methods": {"activation": {"x_forward": 3.04}, "sheared": {"x_forward": 40.0}}}
    assert gpu_check.prune_figures(prune) == "forward 0.50 s; activation 3.0x, sheared 40.0x"
    load = {"checkpoint_gib": 1.93, "ways": {"from_pretrained": {"seconds": 4.0, "host_peak_above_import_gib": 3.9},
                                             "meta_device": {"seconds": 2.5, "host_peak_above_import_gib": 0.05}}}
    assert gpu_check.load_figures(load) == (
        "from_pretrained 4.0 s, host +3.90 GiB; meta_device 2.5 s, host +0.05 GiB (1.93 GiB bf16 checkpoint)")


def test_a_failing_or_slow_step_is_reported_and_the_run_goes_on(tmp_path):
    failing = gpu_check.Step("train", [sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"], 30)
    row = gpu_check.run_step(failing, tmp_path, remaining=60)
    assert row["status"] == "rc 3"
    assert row["figures"].startswith("no figures (boom)")
    assert "boom" in (tmp_path / "train.log").read_text()
    slow = gpu_check.Step("load", [sys.executable, "-c", "import time; time.sleep(30)"], 30, "load.json")
    row = gpu_check.run_step(slow, tmp_path, remaining=1)  # the budget left cuts its own limit
    assert row["status"] == "timeout" and row["seconds"] < 10
    table = gpu_check.summary([{"step": "train", "status": "rc 3", "seconds": 1.2, "figures": "x"}])
    assert table.splitlines()[2] == f"{'train':<7} {'rc 3':<8} {1.2:>8.0f}  x"
