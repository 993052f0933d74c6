"""The continual pre-training loop: `regrow train RECIPE.yaml [--resume]`.

Read it top to bottom: set up (model, data, schedule, optimizer), maybe restore a checkpoint,
then for each step draw the batch of that step, accumulate gradients, clip, step, and hand the
step to the callbacks (train/callbacks/: logging, evaluation, dynamic batch loading, snapshots,
checkpoints, and the recipe's own); finally save a plain HF folder and a run summary.

The same code runs as one process or as many under torchrun: each rank draws its own slice of
the global batch, the model is sharded with FSDP2 (train/parallel.py), rank 0 writes the logs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from regrow.atomic import write_json_atomic
from regrow.config import config_diff, read_yaml, to_dict, write_yaml_atomic
from regrow.data.sampler import MixtureSampler, validate_weights
from regrow.data.store import TokenStore
from regrow.data.tokenizer import fingerprint, load_tokenizer, vocab_size_of
from regrow.device import autocast, resolve_device
from regrow.errors import RegrowError
from regrow.models.evaluate import causal_lm_loss, evaluate_domains
from regrow.models.flops import forward_flops_per_token, model_shape, training_flops_per_token
from regrow.models.hf import build_model, check_compatible, load_model, save_model, shape_signature
from regrow.models.sharded import empty_from_folder, gathered_state_dict, materialize
from regrow.models.sparsity import MASK_FILE, HeldMasks, read_mask_file
from regrow.paths import check_output_dir, only_entries
from regrow.pause_points import pause_point
from regrow.reading import read_json
from regrow.resources import peak_memory
from regrow.train import checkpoint as ckpt
from regrow.train.callbacks import CALLBACKS, Callback, StepInfo
from regrow.train.config import RESUMABLE_CHANGES, RunConfig
from regrow.train.distill import Teacher, distillation_loss
from regrow.train.dynamic import reference_losses
from regrow.train.loggers import LOGGERS
from regrow.train.parallel import full_norm, parallelize
from regrow.train.summary import forgetting_adaptation, new_domains_of
from regrow.world import World, rank_batch

# what a run folder holds; a folder of only these is a run `regrow train` may start again or resume
RUN_ENTRIES = ("config.yaml", "metrics.jsonl", "tensorboard", "wandb", "checkpoints", "model", "summary.json", "snapshots")


def check_resume_compatible(saved: dict, current: dict) -> None:
    """A resume may extend or re-pace a run, never change its model, data or recipe."""
    changed = config_diff(saved, current, ("mixture",), RESUMABLE_CHANGES)  # includes "resolved.*": shape, schedule
    if changed:
        raise RegrowError(
            f"--resume with a changed config: {', '.join(f'{k} ({old!r} -> {new!r})' for k, old, new in changed)}; "
            f"only these may change on resume: {', '.join(RESUMABLE_CHANGES)}"
        )


def make_optimizer(model, cfg: RunConfig, device: torch.device, sharded: bool) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on norms, biases or gains); the fused kernel
    for plain tensors, the multi-tensor one for FSDP's sharded parameters."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type in ("cpu", "cuda") and not sharded
    return torch.optim.AdamW(groups, lr=0.0, betas=tuple(cfg.train.betas), eps=cfg.train.eps, fused=fused, foreach=not fused)


class Trainer:
    """One run: everything is set up in __init__, `run()` trains to `train.steps`."""

    def __init__(self, cfg: RunConfig, resume: bool | str = False, world: World | None = None):
        cfg.validate()
        self.cfg = cfg
        self.world = world or World.from_env()
        self.micro_batch, self.grad_accum = rank_batch(cfg.train.batch_size * cfg.train.grad_accum, cfg.train.batch_size, self.world.world_size)
        self.out = Path(cfg.out_dir)
        self.ckpt_root = self.out / "checkpoints"
        self.resume_from = self._resume_point(resume)
        self.device = self.world.device(resolve_device(cfg.train.device))

        # data
        self.store = TokenStore(cfg.data.path)
        self.mixture = validate_weights(cfg.data.mixture, self.store.domain_names)
        self.eval_domains = cfg.train.eval_domains or self.store.domain_names
        for name in self.eval_domains:
            self.store.domain(name)  # a clear error for an unknown domain
        self.new_domains = new_domains_of(self.mixture, cfg.data.new_domains)

        # tokenizer and model
        init = Path(cfg.model.init) if cfg.model.init else None
        self.tokenizer = load_tokenizer(cfg.tokenizer or init, cfg.model.trust_remote_code)
        self._check_data_tokenizer()
        t = cfg.train
        self.world.start(self.device)
        if init is not None and self.world.distributed:
            # built on the meta device and sharded; each process reads its own rows (a resume
            # reads none: its checkpoint's shards replace them)
            self.model, checkpoint = empty_from_folder(init, cfg.model.trust_remote_code)
            parallelize(self.model, self.world, self.device, t.precision, t.activation_checkpointing, t.compile)
            materialize(self.model, self.device, None if self.resume_from else checkpoint)
        else:
            if init is not None:
                self.model = load_model(init, cfg.model.trust_remote_code)
            else:
                fields = dict(cfg.model.config)
                fields.setdefault("vocab_size", vocab_size_of(self.tokenizer))
                fields.setdefault("eos_token_id", self.tokenizer.eos_token_id)
                fields.setdefault("bos_token_id", self.tokenizer.eos_token_id)
                self.model = build_model(fields, cfg.seed, cfg.model.trust_remote_code)
            self.model.to(self.device)
            parallelize(self.model, self.world, self.device, t.precision, t.activation_checkpointing, t.compile)
        self.model.train()
        check_compatible(self.model, vocab_size_of(self.tokenizer), cfg.data.seq_len)
        self.sparsity = self._held_masks(init)
        shape = model_shape(self.model)
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.flops_per_token = training_flops_per_token(shape, cfg.data.seq_len)
        self.forward_flops_per_token = forward_flops_per_token(shape, cfg.data.seq_len)
        self.pruning_flops = _pruning_flops(init)
        distill = cfg.train.distill
        self.teacher = None if distill is None else Teacher(
            distill.teacher, self.model, cfg.data.seq_len, self.device, self.world, t.precision, cfg.model.trust_remote_code)

        # schedule, optimizer, sampler
        self.schedule = cfg.resolved_schedule()
        self.optimizer = make_optimizer(self.model, cfg, self.device, sharded=self.world.distributed)
        self.sampler = MixtureSampler(
            self.store, self.mixture, cfg.data.seq_len, self.micro_batch, self.grad_accum, cfg.seed,
            self.world.rank, self.world.world_size,
        )
        self.tokens_per_step = self.sampler.global_batch * cfg.data.seq_len
        self.config_dict = to_dict(cfg)
        # what the recipe resolved to; a resume must resolve to the same
        self.config_dict["resolved"] = {
            "model_shape": shape_signature(self.model.config),
            "schedule": {"name": self.schedule.name, **dataclasses.asdict(self.schedule)},
            "sparsity_mask": str(self.sparsity.path) if self.sparsity else None,
        }

        self.step = 0
        self.phase_start_eval: dict | None = None
        self.elapsed = 0.0
        # compute accounting, restored on resume
        self.domain_tokens = {name: 0 for name in self.mixture}
        self.eval_tokens_seen = 0
        self.dynamic_reference: dict[str, float] | None = None
        self.last_eval: dict | None = None  # {"step", "results"} of the latest evaluation in the loop
        self.last_parts: dict[str, float] = {}
        dyn = cfg.data.dynamic
        if dyn is not None and dyn.reference != "source":  # given or fitted: resolved (and checked) up front
            self.dynamic_reference = reference_losses(dyn.reference, list(self.mixture), None, self.n_params)
        if self.resume_from is not None:
            self._restore(self.resume_from)
        elif cfg.train.load_optimizer:
            ckpt.load_optimizer(self.optimizer, self.model, init)
        if self.sparsity is not None and self.resume_from is None:
            self.sparsity.apply(self.optimizer)

    # ---- setup helpers -------------------------------------------------------------------
    def _resume_point(self, resume: bool | str) -> Path | None:
        """resume: True (a checkpoint must exist), False (out_dir must be new) or "auto" (resume
        when there is a checkpoint: jobs that a scheduler may requeue)."""
        check_output_dir(self.out, "out_dir", own=only_entries(*RUN_ENTRIES), what="a regrow run folder")
        latest = ckpt.latest_checkpoint(self.ckpt_root)
        if resume == "auto" and latest is not None:
            return latest
        if resume is True:
            if latest is None:
                raise RegrowError(f"--resume: {str(self.out)!r} has no checkpoint to resume from")
            return latest
        if latest is not None or (self.out / "model").exists():
            raise RegrowError(f"out_dir {str(self.out)!r} already holds a run; pass --resume to continue it or choose another out_dir")
        return None

    def _held_masks(self, init: Path | None) -> HeldMasks | None:
        """The sparsity pattern to hold: train.sparsity_mask, else the one a sparse pruning wrote
        beside model.init; "none": train densely."""
        value = self.cfg.train.sparsity_mask
        if value == "none":
            return None
        path = Path(value) if value else (init / MASK_FILE if init is not None else None)
        if path is None or (not value and not path.is_file()):
            return None
        return HeldMasks(self.model, read_mask_file(path, self.model), path)

    def _check_data_tokenizer(self) -> None:
        owner = f"the run's tokenizer ({self.cfg.tokenizer or self.cfg.model.init})"
        self.store.check_tokenized_with(fingerprint(self.tokenizer), owner)

    def _restore(self, folder: Path) -> None:
        check_resume_compatible(read_yaml(folder / "config.yaml", "checkpoint config"), self.config_dict)
        state = ckpt.load_state(folder)
        ckpt.load_checkpoint(folder, self.model, self.optimizer)
        ckpt.check_optimizer_step(folder, state, self.optimizer)
        ckpt.load_rng(folder)
        self.step = state["step"]
        self.sampler.load_state(state["sampler"])
        self.phase_start_eval = state["phase_start_eval"]
        self.elapsed = state["elapsed_seconds"]
        self.domain_tokens = state["domain_tokens"]
        self.eval_tokens_seen = state["eval_tokens"]
        self.dynamic_reference = state["dynamic_reference"]
        self.last_eval = state.get("last_eval")

    def _autocast(self):
        return autocast(self.device, self.cfg.train.precision)

    # ---- the loop ------------------------------------------------------------------------
    def evaluate(self, domains: list[str] | None = None, max_tokens: int | None = None) -> dict:
        results = evaluate_domains(
            self.model, self.store, domains or self.eval_domains, self.cfg.data.seq_len, self.cfg.train.batch_size,
            max_tokens or self.cfg.train.eval_tokens, self.device, self._autocast, self.world,
        )
        self.eval_tokens_seen += sum(r["tokens"] for r in results.values())
        return results

    def _loss(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The training objective of one micro-batch (with distillation parts when a teacher is set)."""
        if self.teacher is None:
            return causal_lm_loss(self.model, inputs, targets), {}
        distill = self.cfg.train.distill
        logits = self.model(input_ids=inputs, use_cache=False).logits
        teacher_logits = self.teacher.logits(inputs)
        loss, ce, kl = distillation_loss(logits, teacher_logits, targets, distill.weight, distill.temperature)
        return loss, {"ce": ce.detach(), "kl": kl.detach()}

    def train_step(self, step: int) -> tuple[float, float]:
        """One optimizer update (step is 0-based; the schedule sees the 1-based update number)."""
        lr = self.schedule(step + 1)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accum = self.grad_accum
        total = torch.zeros((), device=self.device)
        parts_total: dict[str, torch.Tensor] = {}
        for name, count in self.sampler.domain_counts(range(step, step + 1)).items():
            self.domain_tokens[name] = self.domain_tokens.get(name, 0) + count * self.cfg.data.seq_len
        for micro in range(accum):
            inputs, targets = self.sampler.batch(step, micro)
            inputs, targets = inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
            with self._autocast():
                loss, parts = self._loss(inputs, targets)
            (loss / accum).backward()
            total += loss.detach()
            for key, value in parts.items():
                parts_total[key] = parts_total.get(key, 0) + value / accum
        self.last_parts = {key: self.world.mean(value) for key, value in parts_total.items()}
        if self.sparsity is not None:
            self.sparsity.mask_gradients()
        if self.cfg.train.grad_clip is not None:
            grad_norm = full_norm(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip))
        else:
            grad_norm = float("nan")
        self.optimizer.step()
        if self.sparsity is not None:  # masked weights and their AdamW moments back to exactly zero
            self.sparsity.apply(self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        return self.world.mean(total) / accum, grad_norm

    def callbacks(self) -> list[Callback]:
        """The built-in callbacks the recipe asks for, in order, then the recipe's own."""
        t, built = self.cfg.train, []
        for name, wanted in (("train_log", True), ("evaluation", True), ("dynamic_loading", self.cfg.data.dynamic),
                             ("snapshots", t.save_at_tokens), ("checkpointing", True)):
            if wanted:
                built.append(CALLBACKS[name]())
        return built + [build_callback(spec) for spec in t.callbacks]

    def log(self, event: str, step: int, values: dict) -> None:
        for logger in self.loggers:
            logger.log(event, step, values)

    def run(self) -> dict:
        t = self.cfg.train
        main = self.world.is_main
        resume_step = self.step if self.resume_from is not None else None
        self.loggers = []
        try:
            if main:
                self.loggers = [LOGGERS[name](self.out, self.config_dict, resume_step) for name in ("jsonl", *t.loggers)]
                ckpt.remove_leftovers(self.out, t.keep_checkpoints)
                write_yaml_atomic(self.out / "config.yaml", self.config_dict)
            if self.resume_from is not None:  # where this process took over (kept in metrics.jsonl)
                self.log("resume", self.step, {"tokens": self.step * self.tokens_per_step,
                                               "checkpoint": self.resume_from.name})
            callbacks = self.callbacks()
            for callback in callbacks:
                callback.on_start(self)
            self.bar = tqdm(total=t.steps, initial=self.step, desc="train", unit="step",
                            disable=not (t.progress and main), dynamic_ncols=True)
            while self.step < t.steps:
                started = time.perf_counter()
                loss, grad_norm = self.train_step(self.step)
                if not math.isfinite(loss):
                    last = ckpt.latest_checkpoint(self.ckpt_root)
                    raise RegrowError(
                        f"the training loss is {loss} at step {self.step + 1} (lr {self.schedule(self.step + 1):.3g}): "
                        f"the run diverged; lower schedule.lr_max or set train.grad_clip"
                        + (f"; the last checkpoint ({last.name}) is intact" if last else ""))
                seconds = time.perf_counter() - started
                self.elapsed += seconds
                self.step += 1
                pause_point("train-step")
                info = StepInfo(self.step, self.step * self.tokens_per_step, loss, grad_norm, seconds)
                for callback in callbacks:
                    callback.on_step(self, info)
                self.bar.update(1)
            self.bar.close()
            for callback in callbacks:
                callback.on_end(self)
            self.save_model(self.out / "model")
            summary = self.summary(self.last_eval["results"])
            if main:
                write_json_atomic(self.out / "summary.json", summary)
        finally:
            for logger in self.loggers:
                logger.close()
        return summary

    def save_model(self, folder: Path, extra_json: dict | None = None) -> None:
        """A plain HF folder of the current weights, gathered from the shards (all ranks call it)."""
        full = gathered_state_dict(self.model)
        if self.world.is_main:
            save_model(self.model, self.tokenizer, folder, extra_json, state_dict=full,
                       sparsity_masks=self.sparsity.masks if self.sparsity else None)
        self.world.barrier()

    def save_checkpoint(self) -> Path:
        state = {
            "step": self.step,
            "tokens": self.step * self.tokens_per_step,
            "sampler": self.sampler.state().to_dict(),
            "schedule": {"name": self.schedule.name, "step": self.step, "lr": self.schedule(max(self.step, 1))},
            "phase_start_eval": self.phase_start_eval,
            "elapsed_seconds": self.elapsed,
            "domain_tokens": self.domain_tokens,
            "eval_tokens": self.eval_tokens_seen,
            "dynamic_reference": self.dynamic_reference,
            "last_eval": self.last_eval,  # a resume after the final save does not evaluate (and count) again
        }
        return ckpt.save_checkpoint(self.ckpt_root, self.step, self.model, self.tokenizer, self.optimizer, state,
                                    self.config_dict, self.cfg.train.keep_checkpoints, self.world)

    def compute(self) -> dict:
        """What this run cost (docs/ALGORITHMS.md §8): FLOPs by kind, tokens by domain, time, memory."""
        tokens = self.step * self.tokens_per_step
        flops = {
            "train": self.flops_per_token * tokens,
            "teacher": self.teacher.flops_per_token * tokens if self.teacher else 0.0,
            "eval": self.forward_flops_per_token * self.eval_tokens_seen,
            "pruning": self.pruning_flops,
        }
        peak, peak_kind = peak_memory(self.device)
        return {
            "flops": {**flops, "total": sum(flops.values())},
            "tokens_per_domain": dict(self.domain_tokens),
            "eval_tokens": self.eval_tokens_seen,
            "train_seconds": round(self.elapsed, 3),
            "peak_memory_bytes": peak,
            "peak_memory_kind": peak_kind,
            "world_size": self.world.world_size,
            # a held sparsity pattern runs on dense kernels: its FLOPs above are counted as dense
            "sparsity": None if self.sparsity is None else {
                "mask": str(self.sparsity.path), "zeros": self.sparsity.zeros, "weights": self.sparsity.weights,
                "flops_counted_as": "dense (no sparse kernel is used)"},
        }

    def summary(self, final_eval: dict) -> dict:
        tokens = self.step * self.tokens_per_step
        return {
            "out_dir": str(self.out),
            "steps": self.step,
            "tokens": tokens,
            "train_seconds": round(self.elapsed, 3),
            "tokens_per_second": tokens / self.elapsed if self.elapsed else None,
            "flops": self.flops_per_token * tokens,
            "flops_per_token": self.flops_per_token,
            "compute": self.compute(),
            "mixture": self.mixture,
            "mixture_end": self.sampler.weights,
            "eval_start": self.phase_start_eval,
            "eval_end": final_eval,
            **forgetting_adaptation(self.phase_start_eval, final_eval, self.new_domains),
        }


def _pruning_flops(init: Path | None) -> float:
    """FLOPs a pruning run spent to make model.init (from its pruning_report.json), else 0."""
    report = init / "pruning_report.json" if init is not None else None
    if report is None or not report.is_file():
        return 0.0
    flops = read_json(report, "pruning report", ("flops",))["flops"]
    if not isinstance(flops, (int, float)) or isinstance(flops, bool) or not math.isfinite(flops) or flops < 0:
        raise RegrowError(f"pruning report {str(report)!r} is damaged: flops is {flops!r}")
    return float(flops)


def train(cfg: RunConfig, resume: bool | str = False) -> dict:
    trainer = Trainer(cfg, resume=resume)
    try:
        return trainer.run()
    finally:
        trainer.world.stop()


def build_callback(spec: str | dict) -> Callback:
    """`{name: NAME, option: value, ...}` of train.callbacks -> CALLBACKS[NAME](option=value)."""
    options = {"name": spec} if isinstance(spec, str) else dict(spec)
    cls = CALLBACKS[options.pop("name")]
    try:
        return cls(**options)
    except TypeError as err:
        raise RegrowError(f"train.callbacks: callback {cls.name!r} does not take {sorted(options)}: {err}") from err
