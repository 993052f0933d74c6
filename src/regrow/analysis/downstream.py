"""Downstream evaluation of an HF model folder with lm-evaluation-harness (the `eval` extra).

Tasks are the harness's own (by name) or YAML task files in `include_path` (a task on local
JSONL files works offline). When every requested task is found in `include_path` the harness's
built-in index is not loaded (it takes seconds and lists thousands of Hub tasks).

A task YAML may name Python to run (`!function module.name`: the harness imports `module.py`
from the task's folder). regrow runs no code from files it reads unless asked: a task folder
whose YAML (or a YAML it includes) holds such a hook is refused unless `allow_code` is set
(`regrow eval --allow-code`). The harness's own installed tasks are its code, not a file read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from regrow.errors import RegrowError


def _harness():
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise RegrowError("downstream evaluation (--tasks) needs lm-evaluation-harness: "
                          "pip install 'regrow[eval]'") from None
    return lm_eval, TaskManager


CODE_TAG = "!function"


def code_hooks(include_path: str) -> list[str]:
    """`file:line` of every Python hook (`!function`) in the folder's task YAML files and in the
    YAML files they include (followed wherever they are)."""
    todo = sorted(p for p in Path(include_path).rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    seen, found = set(), []
    while todo:
        path = todo.pop().resolve()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            text = line.split("#", 1)[0]
            if CODE_TAG in text:
                found.append(f"{path}:{number}")
            key, _, value = text.strip().partition(":")
            if key == "include" and value.strip():
                todo.append(path.parent / value.strip().strip("'\""))
    return found


def task_manager(tasks: list[str], include_path: str | None, allow_code: bool = False):
    _, TaskManager = _harness()
    if include_path is not None and not Path(include_path).is_dir():
        raise RegrowError(f"--include-path {include_path!r} is not a folder of task YAML files")
    hooks = code_hooks(include_path) if include_path is not None and not allow_code else []
    if hooks:
        raise RegrowError(f"task file {hooks[0]} names Python code to run ({CODE_TAG}; {len(hooks)} hook(s) in "
                          "--include-path); regrow runs no code from files it reads: pass --allow-code if you "
                          "trust that folder")
    if include_path is not None:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(t in local.all_tasks for t in tasks):
            return local
    manager = TaskManager(include_path=include_path)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise RegrowError(f"unknown task(s) {', '.join(map(repr, unknown))}; give a harness task name "
                          "(`lm_eval ls tasks`) or a YAML task in --include-path")
    return manager


def run_tasks(model_dir: str, tasks: list[str], include_path: str | None = None, num_fewshot: int | None = None,
              limit: int | None = None, batch_size: int = 8, device: str = "cpu", trust_remote_code: bool = False,
              seed: int = 0, allow_code: bool = False) -> dict[str, dict[str, float]]:
    """task -> {metric: value} (the harness's `metric,filter` keys; stderr entries that are N/A dropped)."""
    lm_eval, _ = _harness()
    manager = task_manager(tasks, include_path, allow_code)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    results = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(model_dir), "dtype": "float32", "trust_remote_code": trust_remote_code},
        tasks=tasks, task_manager=manager, num_fewshot=num_fewshot, limit=limit, batch_size=batch_size, device=device,
        log_samples=False, bootstrap_iters=0, random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
        fewshot_random_seed=seed,
        use_cache=None, cache_requests=False,  # the harness's caches are pickles: never read (or written) here
    )
    return {task: {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k not in ("sample_len",)}
            for task, metrics in results["results"].items()}
