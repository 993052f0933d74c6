"""Everything regrow checks on a GPU, in one call, with one summary table (benchmarks/gpu_check.sh).

Steps, each a child process with its own time limit inside the overall budget (a step that
fails or runs out of time is reported and the next one runs):

  tests  pytest -m gpu: bf16 FSDP2, fused AdamW, compile, activation checkpointing, CUDA memory
         accounting, `regrow prune` on CUDA for every method (tests/test_gpu.py)
  train  1.1B Llama, bf16, per-layer compile: tokens/s and MFU of regrow's step against the plain
         PyTorch loop (benchmarks/train_throughput.py --device cuda)
  prune  every method on a 1.0B Llama on CUDA, as a multiple of one forward pass over the
         calibration tokens (benchmarks/gpu_bench.py prune)
  load   that checkpoint onto the GPU: from_pretrained + .to(cuda) against the meta-device load
         (benchmarks/gpu_bench.py load)

    bash benchmarks/gpu_check.sh [--only tests,train] [--budget-s 470] [--out gpu_check_out] [--dry-run]

Results go to OUT/gpu_check.json and each step's output to OUT/<step>.log.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class Step:
    name: str
    command: list[str]
    timeout_s: int  # its own limit (the remaining budget may cut it shorter)
    result_file: str | None = None  # a JSON (or JUnit XML) file the step writes under OUT


def plan(python: str, out: Path) -> list[Step]:
    work = str(out / "work")
    return [
        Step("tests", [python, "-m", "pytest", "-q", "-m", "gpu", str(ROOT / "tests" / "test_gpu.py"), "-p", "no:cacheprovider",
                       f"--junitxml={out / 'tests.xml'}"], 240, "tests.xml"),
        Step("train", [python, str(HERE / "train_throughput.py"), "--device", "cuda", "--steps", "4", "--rounds", "2",
                       "--work", str(out / "train")], 180),
        Step("prune", [python, str(HERE / "gpu_bench.py"), "prune", "--work", work, "--json", str(out / "prune.json")], 200,
             "prune.json"),
        Step("load", [python, str(HERE / "gpu_bench.py"), "load", "--work", work, "--json", str(out / "load.json")], 120,
             "load.json"),
    ]


STEP_NAMES = [step.name for step in plan(sys.executable, Path("."))]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(STEP_NAMES), help=f"comma-separated steps (default: {','.join(STEP_NAMES)})")
    parser.add_argument("--budget-s", type=int, default=470, help="wall-clock budget of all steps together (default 470)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"), help="folder for logs and results")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs the steps (default: this one)")
    parser.add_argument("--dry-run", action="store_true", help="print the steps and their commands; run nothing")
    args = parser.parse_args(argv)
    args.steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in args.steps if s not in STEP_NAMES]
    if unknown or not args.steps:
        parser.exit(2, f"gpu_check: error: --only {args.only!r}: unknown step(s) {', '.join(unknown) or '(none given)'}; "
                       f"allowed: {', '.join(STEP_NAMES)}\n")
    if args.budget_s <= 0:
        parser.exit(2, f"gpu_check: error: --budget-s {args.budget_s}: must be > 0 seconds\n")
    return args


# ---- what each step's output says -------------------------------------------------------

def tests_figures(xml_path: Path) -> str:
    """'N passed, F failed, S skipped' (+ the first failed tests' names) from pytest's JUnit XML."""
    root = ET.parse(xml_path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    text = f"{total - failed - skipped} passed, {failed} failed, {skipped} skipped"
    names = [case.get("name") for case in suite.iter("testcase")
             if case.find("failure") is not None or case.find("error") is not None]
    return text + (f" ({', '.join(names[:3])})" if names else "")


def train_figures(stdout: str) -> str:
    """tokens/s, MFU and the ratio to the plain loop from train_throughput's JSON."""
    data = json.loads(stdout[stdout.index("{"):])
    ours = data.get("regrow+compile") or data["regrow"]
    plain = data.get("plain")
    text = f"{ours['tokens_per_s_per_process']:,.0f} tok/s, MFU {ours['mfu']:.1%}"
    if plain:
        text += f"; plain loop {plain['tokens_per_s_per_process']:,.0f} tok/s, MFU {plain['mfu']:.1%}, regrow/plain {ours['ratio_vs_plain']:.2f}"
    return text


def prune_figures(data: dict) -> str:
    """Each method's whole prune as a multiple of one forward pass."""
    parts = [f"{name} {m['x_forward']:.1f}x" for name, m in data["methods"].items()]
    return f"forward {data['forward_seconds']:.2f} s; " + ", ".join(parts)


def load_figures(data: dict) -> str:
    ways = data["ways"]
    return "; ".join(f"{name} {w['seconds']:.1f} s, host +{w['host_peak_above_import_gib']:.2f} GiB"
                     for name, w in ways.items()) + f" ({data['checkpoint_gib']:.2f} GiB bf16 checkpoint)"


def figures(step: Step, out: Path, stdout: str) -> str:
    if step.name == "tests":
        return tests_figures(out / step.result_file)
    if step.name == "train":
        return train_figures(stdout)
    data = json.loads((out / step.result_file).read_text())
    return prune_figures(data) if step.name == "prune" else load_figures(data)


def summary(rows: list[dict]) -> str:
    """The table printed at the end: one row per step."""
    lines = [f"{'step':<7} {'status':<8} {'seconds':>8}  figures", "-" * 100]
    for row in rows:
        lines.append(f"{row['step']:<7} {row['status']:<8} {row['seconds']:>8.0f}  {row['figures']}")
    return "\n".join(lines)


def run_step(step: Step, out: Path, remaining: float) -> dict:
    limit = max(1, int(min(step.timeout_s, remaining)))
    started = time.perf_counter()
    log = out / f"{step.name}.log"
    try:
        done = subprocess.run(step.command, capture_output=True, text=True, timeout=limit, cwd=ROOT)
        status = "ok" if done.returncode == 0 else f"rc {done.returncode}"
        stdout, stderr = done.stdout, done.stderr
    except subprocess.TimeoutExpired as err:
        status, stdout = "timeout", (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        stderr = (err.stderr or b"").decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
    log.write_text(f"$ {' '.join(step.command)}\n{stdout}\n--- stderr ---\n{stderr}")
    try:
        text = figures(step, out, stdout)
    except Exception as err:  # noqa: BLE001  (a failed step leaves partial or no output: say so, go on)
        tail = (stderr.strip().splitlines() or stdout.strip().splitlines() or [f"{type(err).__name__}: {err}"])[-1]
        text = f"no figures ({tail[:150]}); see {log}"
    return {"step": step.name, "status": status, "seconds": time.perf_counter() - started, "figures": text}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    steps = [s for s in plan(args.python, args.out.resolve()) if s.name in args.steps]
    if args.dry_run:
        for step in steps:
            print(f"{step.name} (<= {step.timeout_s} s): {' '.join(step.command)}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device is visible (torch.cuda.is_available() is False); "
              "run this on a GPU machine", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, budget {args.budget_s} s", flush=True)
    deadline = time.perf_counter() + args.budget_s
    rows = []
    for step in steps:
        remaining = deadline - time.perf_counter()
        if remaining < 5:
            rows.append({"step": step.name, "status": "skipped", "seconds": 0.0, "figures": "the budget ran out"})
            continue
        rows.append(run_step(step, args.out.resolve(), remaining))
        print(f"{rows[-1]['step']}: {rows[-1]['status']} in {rows[-1]['seconds']:.0f} s", flush=True)
    (args.out / "gpu_check.json").write_text(json.dumps(rows, indent=2))
    print(summary(rows))
    return 0 if all(row["status"] == "ok" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
