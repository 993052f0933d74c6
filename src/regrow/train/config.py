"""The configuration of one training run (`regrow train RECIPE.yaml`), as typed dataclasses.

Field names are the recipe keys (`train.steps`, `data.mixture`, ...). `validate` holds every
check that needs no files; checks against the data and the model happen once they are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regrow.errors import RegrowError

PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class ModelConfig:
    """Where the model comes from: `init` (an HF folder or a regrow checkpoint) or `config`."""

    init: str | None = None
    config: dict[str, Any] | None = None
    trust_remote_code: bool = False


@dataclass
class DynamicConfig:
    """Dynamic batch loading (Sheared-LLaMA, ALGORITHMS.md §4); defaults = the paper's rule."""

    reference: Any = "source"  # "source" | {domain: loss} | {fit: [{params: N, losses: {domain: loss}}, ...]}
    interval: int = 400  # steps between updates (the paper: 50 while pruning, 400 in continued training)
    eta: float = 1.0
    clamp: bool = True  # delta = max(loss - reference, 0) as in the paper; false = the released code
    smoothing: float = 0.0  # w <- (1 - c) w + c / k after each update (the released code: 1e-4)
    eval_tokens: int | None = None  # validation tokens per domain per update (default: train.eval_tokens)


@dataclass
class DataConfig:
    path: str = ""
    mixture: dict[str, float] = field(default_factory=dict)
    seq_len: int = 256
    new_domains: list[str] | None = None  # default: the domain(s) with the largest weight
    dynamic: DynamicConfig | None = None


@dataclass
class DistillConfig:
    """Knowledge distillation from a teacher: loss = (1 - weight) CE + weight T^2 KL(teacher_T || student_T)."""

    teacher: str = ""  # an HF folder, usually the unpruned source model
    weight: float = 0.5
    temperature: float = 1.0


@dataclass
class TrainSettings:
    steps: int = 100
    batch_size: int = 8
    grad_accum: int = 1
    eval_every: int = 0  # 0: evaluate only at the start and the end
    eval_tokens: int = 65536  # validation tokens per domain and evaluation
    eval_domains: list[str] | None = None  # default: every domain of the data folder
    checkpoint_every: int = 0  # 0: only the final checkpoint
    keep_checkpoints: int = 2
    save_at_tokens: list[int] = field(default_factory=list)  # HF snapshots at these token counts (snapshots/tokens-N)
    log_every: int = 10
    grad_clip: float = 1.0
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    precision: str = "fp32"
    compile: bool = False  # torch.compile each decoder layer
    activation_checkpointing: bool = False  # recompute each decoder layer's activations in the backward pass
    load_optimizer: bool = False  # continue with the optimizer state saved beside model.init
    device: str = "auto"
    progress: bool = True
    distill: DistillConfig | None = None


@dataclass
class RunConfig:
    out_dir: str = "runs/run"
    seed: int = 0
    tokenizer: str | None = None  # default: the tokenizer saved in model.init
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    schedule: dict[str, Any] = field(default_factory=lambda: {"name": "cosine"})

    def validate(self) -> None:
        if (self.model.init is None) == (self.model.config is None):
            raise RegrowError("set exactly one of model.init (a model folder) and model.config (config fields)")
        if self.model.config is not None and self.tokenizer is None:
            raise RegrowError("model.config builds a new model, which needs a tokenizer: set `tokenizer`")
        if not self.data.path:
            raise RegrowError("data.path is not set; point it at a folder made by `regrow data prepare`")
        t = self.train
        for key, value, low in (
            ("train.steps", t.steps, 1), ("train.batch_size", t.batch_size, 1), ("train.grad_accum", t.grad_accum, 1),
            ("data.seq_len", self.data.seq_len, 1), ("train.eval_every", t.eval_every, 0),
            ("train.checkpoint_every", t.checkpoint_every, 0), ("train.keep_checkpoints", t.keep_checkpoints, 1),
            ("train.log_every", t.log_every, 1), ("train.eval_tokens", t.eval_tokens, 1),
        ):
            if value < low:
                raise RegrowError(f"{key} is {value}; it must be >= {low}")
        bad_tokens = [n for n in t.save_at_tokens if not isinstance(n, int) or n < 1]
        if bad_tokens:
            raise RegrowError(f"train.save_at_tokens has {bad_tokens[0]!r}; allowed: positive integer token counts")
        if t.precision not in PRECISIONS:
            raise RegrowError(f"train.precision {t.precision!r} is not supported; allowed: {', '.join(PRECISIONS)}")
        if t.device not in DEVICES:
            raise RegrowError(f"train.device {t.device!r} is not supported; allowed: {', '.join(DEVICES)}")
        if t.grad_clip < 0 or t.weight_decay < 0:
            raise RegrowError("train.grad_clip and train.weight_decay must be >= 0")
        d = self.data.dynamic
        if d is not None:
            if d.interval < 1:
                raise RegrowError(f"data.dynamic.interval is {d.interval}; it must be >= 1")
            if d.eta <= 0:
                raise RegrowError(f"data.dynamic.eta is {d.eta}; it must be > 0")
            if not 0 <= d.smoothing < 1:
                raise RegrowError(f"data.dynamic.smoothing is {d.smoothing}; allowed: 0 <= c < 1")
            if d.eval_tokens is not None and d.eval_tokens < 1:
                raise RegrowError(f"data.dynamic.eval_tokens is {d.eval_tokens}; it must be >= 1")
        k = t.distill
        if k is not None:
            if not k.teacher:
                raise RegrowError("train.distill.teacher is not set; give an HF model folder (usually the unpruned source)")
            if not 0 <= k.weight <= 1:
                raise RegrowError(f"train.distill.weight is {k.weight}; allowed: 0..1")
            if k.temperature <= 0:
                raise RegrowError(f"train.distill.temperature is {k.temperature}; it must be > 0")


# Keys that may differ between a run and its --resume (everything else must match).
RESUMABLE_CHANGES = (
    "train.steps", "train.eval_every", "train.checkpoint_every", "train.keep_checkpoints",
    "train.log_every", "train.compile", "train.device", "train.progress", "train.save_at_tokens",
    "train.activation_checkpointing",
)
