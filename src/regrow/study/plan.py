"""A study's grid -> the runs it needs, each with a stable key, its full config and a hash.

Runs: the base pre-training (when the study makes its own source), one pruning run per
(method, target, reinit, seed), the from-scratch control per (target, seed), and one continued
training run per starting model x schedule x replay x token budget (seeded), the unpruned
source included as a control.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from regrow.config import from_dict
from regrow.errors import RegrowError
from regrow.study.config import StudyConfig
from regrow.train.config import TrainSettings


@dataclass
class Job:
    key: str
    kind: str  # pretrain | prune | train
    config: dict  # a RunConfig (pretrain, train) or PruneConfig (prune) mapping
    needs: list[str] = field(default_factory=list)
    labels: dict = field(default_factory=dict)

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.config, sort_keys=True).encode()).hexdigest()[:16]


def target_label(index: int, ratio: float | None = None) -> str:
    return f"r{ratio:g}" if ratio is not None else f"t{index}"


def target_file(out_dir: Path, index: int) -> Path:
    return out_dir / "targets" / f"t{index}.yaml"


def mixture_for(cfg: StudyConfig, replay: float) -> dict[str, float]:
    """New domains share 1 - replay, old domains share replay."""
    mixture = {d: (1 - replay) / len(cfg.data.new) for d in cfg.data.new}
    if replay > 0:
        mixture.update({d: replay / len(cfg.data.old) for d in cfg.data.old})
    return mixture


def steps_for(cfg: StudyConfig, tokens: int) -> int:
    shared = from_dict(TrainSettings, cfg.train, where="train")  # the shared train keys, typed and checked
    for key, value in (("train.batch_size", shared.batch_size), ("train.grad_accum", shared.grad_accum)):
        if value < 1:
            raise RegrowError(f"{key} is {value}; it must be >= 1")
    per_step = shared.batch_size * shared.grad_accum * cfg.data.seq_len
    if tokens < per_step:
        raise RegrowError(f"grid.tokens {tokens} is smaller than one step ({per_step} tokens = train.batch_size x "
                          f"train.grad_accum x data.seq_len); allowed: >= {per_step}")
    return tokens // per_step


def make_plan(cfg: StudyConfig) -> list[Job]:
    out = Path(cfg.out_dir)
    runs = out / "runs"
    jobs: list[Job] = []
    source = cfg.source.model
    needs_source: list[str] = []
    eval_domains = list(dict.fromkeys([*cfg.data.old, *cfg.data.new]))
    if cfg.source.pretrain is not None:
        p = dict(cfg.source.pretrain)
        base = {
            "out_dir": str(runs / "base"), "seed": 0, "tokenizer": cfg.tokenizer,
            "model": {"config": p.get("config", {})},
            "data": {"path": cfg.data.path, "mixture": p.get("mixture") or {d: 1.0 for d in cfg.data.old or cfg.data.new},
                     "seq_len": cfg.data.seq_len},
            "train": {**cfg.train, **p.get("train", {}), "steps": p.get("steps", 100), "eval_domains": eval_domains,
                      "progress": False},
            "schedule": p.get("schedule", {"name": "cosine"}),
        }
        jobs.append(Job("base", "pretrain", base, labels={"role": "base"}))
        source, needs_source = str(runs / "base" / "model"), ["base"]

    targets = [(target_label(i), str(target_file(out, i)), None) for i in range(len(cfg.grid.target))]
    targets += [(target_label(0, r), None, r) for r in cfg.grid.target_ratio]
    starts = []  # (key, model folder, needs, labels)
    for seed in cfg.grid.seed:
        for label, spec, ratio in targets:
            combos = [(m, r) for m in cfg.grid.method for r in cfg.grid.reinit]
            if cfg.controls.scratch:
                combos.append(("scratch", "random"))
            for method, reinit in combos:
                scratch = method == "scratch"
                key = f"scratch-{label}-seed{seed}" if scratch else f"prune-{method}-{label}-{reinit}-seed{seed}"
                prune = {
                    **cfg.prune, "model": source, "out": str(runs / key), "method": "magnitude" if scratch else method,
                    "target": spec, "target_ratio": ratio, "data": cfg.data.path,
                    "mixture": {d: 1.0 for d in cfg.data.old or cfg.data.new}, "reinit": reinit, "seed": seed,
                    "seq_len": cfg.data.seq_len, "progress": False,
                }
                labels = {"role": "scratch" if scratch else "pruned", "method": "scratch" if scratch else method,
                          "target": label, "reinit": reinit, "seed": seed}
                jobs.append(Job(key, "prune", prune, list(needs_source), labels))
                starts.append((key.removeprefix("prune-"), str(runs / key), [key], labels))
        if cfg.controls.source:
            starts.append((f"source-seed{seed}", source, list(needs_source),
                           {"role": "source", "method": "source", "target": "source", "reinit": "none", "seed": seed}))

    for start_key, model, needs, labels in starts:
        for s_index, schedule in enumerate(cfg.grid.schedule):
            schedule_label = f"{schedule.get('name', 'cosine')}{s_index}"
            for replay in cfg.grid.replay:
                mixture = mixture_for(cfg, replay)
                for d_index, dynamic in enumerate(cfg.grid.dynamic):
                    if dynamic is not None and len(mixture) < 2 and None in cfg.grid.dynamic:
                        continue  # a one-domain mixture cannot be re-weighted: the fixed cell is the same run
                    cell = schedule_label if dynamic is None else f"{schedule_label}.dyn{d_index}"
                    for tokens in cfg.grid.tokens:
                        key = f"train-{start_key}-{cell}-replay{replay:g}-tok{tokens}"
                        run = {
                            "out_dir": str(runs / key), "seed": labels["seed"], "tokenizer": cfg.tokenizer,
                            "model": {"init": model},
                            "data": {"path": cfg.data.path, "mixture": mixture, "seq_len": cfg.data.seq_len,
                                     "new_domains": list(cfg.data.new), "dynamic": dynamic},
                            "train": {**cfg.train, "steps": steps_for(cfg, tokens), "eval_domains": eval_domains,
                                      "progress": False},
                            "schedule": dict(schedule),
                        }
                        jobs.append(Job(key, "train", run, needs, {**labels, "schedule": cell, "replay": replay,
                                                                   "tokens": tokens, "dynamic": d_index if dynamic else None}))
    return jobs


@dataclass(frozen=True)
class RunName:
    """The parts of a training run's key, `train-{start}-{schedule}-replay{r}-tok{n}` (see make_plan)."""

    start: str  # e.g. sheared-r0.5-none-seed0, scratch-r0.5-seed0, source-seed0
    schedule: str  # e.g. cosine0, infinite1.dyn1
    replay: str
    tokens: str

    @classmethod
    def parse(cls, key: str) -> RunName:
        start, schedule, replay, tokens = key.removeprefix("train-").rsplit("-", 3)
        return cls(start, schedule, replay, tokens)

    @property
    def seed(self) -> str:
        return next((p for p in self.start.split("-") if p.startswith("seed")), "seed0")

    @property
    def start_without_seed(self) -> str:
        return "-".join(p for p in self.start.split("-") if not p.startswith("seed"))

    @property
    def cell(self) -> tuple[str, str, str, str]:
        """What a run shares with its controls: schedule, replay, budget, seed."""
        return (self.schedule, self.replay, self.tokens, self.seed)

    @property
    def dynamic(self) -> bool:
        """Whether the run loads batches dynamically (schedule part `NAME.dynK`)."""
        return bool(self.schedule.partition(".")[2])

    @property
    def role(self) -> str:
        return "scratch" if self.start.startswith("scratch-") else "source" if self.start.startswith("source-") else "pruned"
