"""The configuration of one training run (`regrow train RECIPE.yaml`), as typed dataclasses.

Field names are the recipe keys (`train.steps`, `data.mixture`, ...). `validate` holds every
check that needs no files; checks against the data and the model happen once they are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regrow.device import DEVICES, PRECISIONS
from regrow.errors import RegrowError, reason_of
from regrow.schedules import Cosine, Schedule
from regrow.train.dynamic import check_reference


@dataclass
class ModelConfig:
    """Where the model comes from: `init` (an HF folder or a regrow checkpoint) or `config`."""

    init: str | None = None
    config: dict[str, Any] | None = None
    trust_remote_code: bool = False


@dataclass
class DynamicConfig:
    """Dynamic batch loading (Sheared-LLaMA, docs/ALGORITHMS.md §4); defaults = the paper's rule."""

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
    grad_clip: float | None = 1.0  # null: no clipping
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    precision: str = "fp32"
    compile: bool = False  # torch.compile each decoder layer
    activation_checkpointing: bool = False  # recompute each decoder layer's activations in the backward pass
    load_optimizer: bool = False  # continue with the optimizer state saved beside model.init
    # hold a sparsity pattern: a sparsity_mask.safetensors; null = the one beside model.init if any; "none" = dense
    sparsity_mask: str | None = None
    device: str = "auto"
    progress: bool = True
    distill: DistillConfig | None = None
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])  # besides metrics.jsonl; e.g. add "wandb"
    callbacks: list[str | dict[str, Any]] = field(default_factory=list)  # extra callbacks: NAME or {name: NAME, option: value}


@dataclass
class RunConfig:
    out_dir: str = "runs/run"
    seed: int = 0
    tokenizer: str | None = None  # default: the tokenizer saved in model.init
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    schedule: Schedule = field(default_factory=Cosine)  # one class per `name` (train/schedules.py)

    def resolved_schedule(self) -> Schedule:
        """The schedule with total_steps filled in (train.steps when the recipe gives none), checked."""
        return self.schedule.resolved(self.train.steps)

    def validate(self) -> None:
        """Every check that needs no files: called once when the recipe is loaded."""
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
        from regrow.train.callbacks import CALLBACKS
        from regrow.train.loggers import LOGGERS

        for logger in t.loggers:
            if logger not in LOGGERS or logger == "jsonl":
                allowed = [name for name in LOGGERS if name != "jsonl"]
                raise RegrowError(f"train.loggers names {logger!r}; allowed: {', '.join(allowed)} (metrics.jsonl is always written)")
        for i, spec in enumerate(t.callbacks):
            name = spec if isinstance(spec, str) else spec.get("name")
            if name not in CALLBACKS:
                raise RegrowError(f"train.callbacks[{i}] names callback {name!r}; registered: {', '.join(CALLBACKS)}")
        if t.precision not in PRECISIONS:
            raise RegrowError(f"train.precision {t.precision!r} is not supported; allowed: {', '.join(PRECISIONS)}")
        if t.device not in DEVICES:
            raise RegrowError(f"train.device {t.device!r} is not supported; allowed: {', '.join(DEVICES)}")
        if t.grad_clip is not None and t.grad_clip <= 0:
            raise RegrowError(f"train.grad_clip is {t.grad_clip}; it must be > 0, or null to turn clipping off")
        if t.weight_decay < 0:
            raise RegrowError(f"train.weight_decay is {t.weight_decay}; it must be >= 0")
        for i, beta in enumerate(t.betas):
            if not 0 <= beta < 1:
                raise RegrowError(f"train.betas[{i}] is {beta}; allowed: 0 <= beta < 1")
        if t.eps <= 0:
            raise RegrowError(f"train.eps is {t.eps}; it must be > 0")
        for name, weight in self.data.mixture.items():
            if weight < 0:
                raise RegrowError(f"data.mixture weight of {name!r} is {weight}; weights must be >= 0")
        if self.data.mixture and sum(self.data.mixture.values()) <= 0:
            raise RegrowError("data.mixture weights are all zero; at least one must be positive")
        unknown = [d for d in self.data.new_domains or [] if d not in self.data.mixture]
        if unknown:
            raise RegrowError(f"data.new_domains names {unknown[0]!r}, which data.mixture lacks; "
                              f"allowed: {', '.join(self.data.mixture) or '(the mixture is empty)'}")
        if self.model.config is not None:
            check_model_fields(self.model.config)
        self.resolved_schedule()
        d = self.data.dynamic
        if d is not None:
            check_reference(d.reference, list(self.data.mixture))
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


SIZE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "max_position_embeddings", "n_layer", "n_head", "n_embd",
             "n_positions", "ffn_hidden_size", "moe_intermediate_size", "num_experts", "num_experts_per_tok")


def check_model_fields(fields: dict[str, Any]) -> None:
    """Sizes of a model to build must be positive integers (checked before anything is built)."""
    if not isinstance(fields.get("model_type"), str) or not fields.get("model_type"):
        raise RegrowError("model.config needs a model_type (e.g. llama, mistral, qwen2, gpt_neox, bloom, olmo2)")
    for key in SIZE_KEYS:
        value = fields.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RegrowError(f"model.config.{key} is {value!r}; it must be a positive integer")
    from transformers import AutoConfig

    rest = {k: v for k, v in fields.items() if k != "model_type"}
    try:
        AutoConfig.for_model(fields["model_type"], **rest)  # HF's own checks of the fields, nothing built
    except Exception as err:  # noqa: BLE001  (config classes raise ValueError, TypeError, KeyError, ...)
        raise RegrowError(f"model.config is not a valid {fields['model_type']!r} config: {reason_of(err)}") from err


# Keys that may differ between a run and its --resume (everything else must match).
RESUMABLE_CHANGES = (
    "out_dir",  # a run folder may be moved
    "train.steps", "train.eval_every", "train.checkpoint_every", "train.keep_checkpoints",
    "train.log_every", "train.compile", "train.device", "train.progress", "train.save_at_tokens",
    "train.activation_checkpointing", "train.loggers", "train.callbacks",
)
