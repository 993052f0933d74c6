"""Run a study: plan its runs, record them in the SQLite index, execute what is not done.

Re-running skips finished runs, retries failed ones and resumes killed training runs from
their last checkpoint. A failing run is recorded and the others go on; runs that need it are
marked failed with the reason. Ctrl-C returns running rows to 'pending' before exiting.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from regrow.atomic import write_text_atomic
from regrow.config import config_diff, from_dict, read_yaml, to_dict, write_yaml_atomic
from regrow.errors import RegrowError
from regrow.paths import check_output_dir
from regrow.study.config import StudyConfig
from regrow.study.executors import EXECUTORS
from regrow.study.index import StudyIndex
from regrow.study.plan import Job, make_plan, target_file
from regrow.study.progress import Progress

STUDY_FILE = "study.yaml"
INDEX_FILE = "index.sqlite"


def is_study_dir(folder: Path) -> bool:
    return (folder / STUDY_FILE).is_file() or (folder / INDEX_FILE).is_file()


def check_compatible(out: Path, resolved: dict) -> None:
    """A study folder belongs to one study file: refuse another one, naming the keys that differ."""
    saved_path = out / STUDY_FILE
    if not saved_path.is_file():
        return
    differ = [key for key, _, _ in config_diff(read_yaml(saved_path), resolved)]
    if differ:
        raise RegrowError(f"study folder {str(out)!r} was created by another study file; keys that differ: "
                          f"{', '.join(differ)}; use a new out_dir or restore those values")


def validate_against_data(cfg: StudyConfig, jobs: list[Job]) -> None:
    """Every run's config must be valid and name domains the data folder has (before any work)."""
    from regrow.compress.config import PruneConfig
    from regrow.data.store import TokenStore
    from regrow.train.config import RunConfig

    store = TokenStore(cfg.data.path)
    missing = [d for d in [*cfg.data.old, *cfg.data.new] if d not in store.domain_names]
    if missing:
        raise RegrowError(f"data.old/new name domain(s) {', '.join(missing)} that {cfg.data.path!r} lacks; "
                          f"it has: {', '.join(store.domain_names)}")
    from regrow.compress.prune import check_config
    from regrow.compress.streaming import check_streaming

    for job in jobs:
        try:
            if job.kind == "prune":
                prune_cfg = from_dict(PruneConfig, job.config)
                check_config(prune_cfg)
                if prune_cfg.streaming:
                    check_streaming(prune_cfg)
            else:
                from_dict(RunConfig, job.config).validate()
        except RegrowError as err:
            raise RegrowError(f"run {job.key}: {err}") from err


def write_targets(folder: Path, cfg: StudyConfig) -> None:
    for i, spec in enumerate(cfg.grid.target):
        write_text_atomic(target_file(folder, i), json.dumps(spec) + "\n")


def check_targets(cfg: StudyConfig) -> None:
    """Every target shape must fit the source (checked on a meta-device copy of its config)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from regrow.compress.families import adapter_for
    from regrow.compress.sparsity import SparsityTarget, sparse_weight_count
    from regrow.compress.targets import checked_target
    from regrow.data.tokenizer import load_tokenizer, vocab_size_of

    if cfg.source.model is not None:
        from regrow.models.hf import is_model_dir

        if not is_model_dir(cfg.source.model):
            raise RegrowError(f"source.model {cfg.source.model!r} is not an HF model folder (config.json + safetensors)")
        config = AutoConfig.from_pretrained(cfg.source.model)
    else:
        fields = dict(cfg.source.pretrain.get("config", {}))
        if "vocab_size" not in fields:  # as the pre-training sets it
            fields["vocab_size"] = vocab_size_of(load_tokenizer(cfg.tokenizer))
        try:
            config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        except (KeyError, ValueError, TypeError) as err:
            raise RegrowError(f"source.pretrain.config is not a valid model config: {err}") from err
    from regrow.compress.methods import METHODS

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    adapter = adapter_for(model.config)
    source = adapter.shape(model.config)
    sparse = [method for method in cfg.grid.method if METHODS[method].sparse]
    if sparse:  # a ratio is a non-zero fraction for them: reachable only if the zeroable weights suffice
        n_source, n_weights = sum(p.numel() for p in model.parameters()), sparse_weight_count(model, adapter)
        for ratio in cfg.grid.target_ratio:
            try:
                SparsityTarget.leaving(ratio, n_source, n_weights)
            except RegrowError as err:
                raise RegrowError(f"grid.target_ratio {ratio} with sparse method {sparse[0]!r}: {err}") from err
    with tempfile.TemporaryDirectory(prefix="regrow-targets-") as tmp:  # the study folder is written after every check
        write_targets(Path(tmp), cfg)
        targets = [checked_target(model, adapter, str(target_file(Path(tmp), i)), None, depth_only=False)
                   for i in range(len(cfg.grid.target))]
    for i, (spec, target) in enumerate(zip(cfg.grid.target, targets)):
        for method in cfg.grid.method:
            try:
                METHODS[method]().check_target(source, target)
            except RegrowError as err:
                raise RegrowError(f"grid.target[{i}] {spec} with method {method!r}: {err}") from err


def _waves(jobs: list[Job]) -> list[list[Job]]:
    order = {"pretrain": 0, "prune": 1, "train": 2}
    return [[j for j in jobs if order[j.kind] == level] for level in range(3)]


def run_study(cfg: StudyConfig, jobs_in_parallel: int = 1, echo: Callable[[str], None] = print,
              executor: str = "local", executor_params: dict | None = None) -> dict[str, int]:
    """Run the study with a registered executor (`local`: this machine, --jobs processes;
    `slurm` / `submitit-local`: submitit, with `executor_params` such as timeout_min)."""
    from regrow.compress.methods import METHODS
    from regrow.compress.reinit import REINITS

    cfg.validate(list(METHODS), list(REINITS))
    if jobs_in_parallel < 1:
        raise RegrowError(f"--jobs is {jobs_in_parallel}; it must be >= 1")
    runner_class = EXECUTORS[executor]
    runner_class.check()
    out = check_output_dir(cfg.out_dir, "out_dir", own=is_study_dir, what="a study folder")
    resolved = to_dict(cfg)
    check_compatible(out, resolved)
    plan = make_plan(cfg)
    validate_against_data(cfg, plan)
    check_targets(cfg)
    if (out / INDEX_FILE).exists():
        StudyIndex(out / INDEX_FILE).close()  # a damaged index is named before anything is written
    out.mkdir(parents=True, exist_ok=True)
    write_targets(out, cfg)
    write_yaml_atomic(out / STUDY_FILE, resolved)

    index = StudyIndex(out / INDEX_FILE)
    try:
        released = index.release_running()
        if released:
            echo(f"{released} run(s) interrupted earlier will run again")
        for job in plan:
            index.add(job.key, job.kind, job.config_hash)
        failed: set[str] = set()
        runner = runner_class(out, jobs_in_parallel, executor_params)
        progress = Progress([j for j in plan if index.status(j.key) != "done"], jobs_in_parallel, echo)
        for wave in _waves(plan):
            todo = []
            for job in wave:
                if index.status(job.key) == "done":
                    continue
                blocked = [n for n in job.needs if n in failed or index.status(n) != "done"]
                if blocked:
                    index.fail(job.key, f"needs {', '.join(blocked)}, which did not finish")
                    failed.add(job.key)
                    continue
                todo.append(job)
            for job in wave:
                if job.key in failed and job not in todo:
                    progress.skipped(job)

            def started(job: Job) -> None:
                index.start(job.key)
                progress.started(job)

            def finished(job: Job, outcome) -> None:
                _record(index, job, outcome, failed, echo)
                progress.finished(job, ok=job.key not in failed)

            try:
                runner.run(todo, started, finished)
            except KeyboardInterrupt:
                index.release_running()
                raise
        counts = index.counts()
    finally:
        index.close()
    echo(f"study {out}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return counts


def _record(index: StudyIndex, job: Job, outcome: tuple[dict, float] | BaseException, failed: set[str],
            echo: Callable[[str], None]) -> None:
    if isinstance(outcome, BaseException):
        text = str(outcome).strip()
        message = f"{type(outcome).__name__}: {text.splitlines()[-1] if text else ''}".rstrip(": ")
        index.fail(job.key, message)
        failed.add(job.key)
        echo(f"  failed {job.key}: {message}")
    else:
        index.finish(job.key, *outcome)


def study_status(out_dir: str | Path) -> tuple[dict[str, int], list[dict]]:
    path = Path(out_dir) / INDEX_FILE
    if not path.is_file():
        raise RegrowError(f"{str(out_dir)!r} is not a study folder (no {INDEX_FILE}); run `regrow study STUDY.yaml` first")
    index = StudyIndex(path)
    try:
        return index.counts(), index.rows()
    finally:
        index.close()
