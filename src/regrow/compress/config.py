"""The configuration of one pruning run (`regrow prune ...`), as typed dataclasses.

CLI flags and `--set key=value` fill the same fields; `validate` checks everything that needs
no files; the resolved config is saved beside the pruned model as prune_config.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from regrow.device import DEVICES, PRECISIONS
from regrow.errors import RegrowError

DEPTH_MODES = ("individual", "contiguous")
BATCH_REDUCTIONS = ("l2", "mean")
EXPERT_CRITERIA = ("reap", "frequency", "random")


@dataclass
class ShearedOptions:
    """Learned hard-concrete masks with a Lagrangian constraint (docs/ALGORITHMS.md §1)."""

    steps: int = 200
    temperature: float = 2 / 3  # beta: 2/3 in the released code, 0.83 in the paper's appendix
    lr_weights: float = 1e-4
    lr_masks: float = 1.0
    lr_lambdas: float = 1.0  # gradient *ascent* on the Lagrange multipliers (the paper's lr -1.0)
    warmup_fraction: float = 0.1
    min_lr_fraction: float = 0.1  # cosine to 10% of peak
    target_ramp_fraction: float = 0.2  # target sparsity ramps linearly over the first 20% of steps
    init_log_alpha: float = 5.0  # log_alpha ~ N(5, 0.01): training starts with every unit kept
    grad_clip: float = 1.0
    fold: bool = True  # fold the kept entries' soft mask values (about 0.996) into the weights
    log_every: int = 10


@dataclass
class SparseGPTOptions:
    """SparseGPT's solver (docs/ALGORITHMS.md §10; the paper's defaults)."""

    block_size: int = 128  # input columns whose mask is chosen together
    percdamp: float = 0.01  # dampening: lambda = percdamp x mean(diag(H))


@dataclass
class ShrinkPerturbOptions:
    shrink: float = 0.8  # lambda
    perturb: float = 0.01  # sigma


@dataclass
class PruneConfig:
    model: str = ""
    out: str = ""
    method: str = "activation"
    target: str | None = None  # YAML/JSON shape or an HF config.json
    target_ratio: float | None = None  # fraction of parameters to keep
    data: str | None = None
    mixture: dict[str, float] = field(default_factory=dict)  # default: every domain equally
    reinit: str = "none"
    seed: int = 0
    seq_len: int = 256
    batch_size: int = 8
    calibration_samples: int = 1024
    batch_reduction: str = "l2"  # how per-sample statistics are reduced over the batch
    depth_mode: str = "individual"  # individual: lowest block influence; contiguous: best run of layers
    expert_criterion: str = "reap"  # activation on a mixture of experts: reap, frequency or random expert scores
    precision: str = "fp32"
    device: str = "auto"
    trust_remote_code: bool = False
    progress: bool = True
    streaming: bool = False  # read the checkpoint lazily and calibrate one layer at a time (prune beyond memory)
    activation_memory_gb: float = 1.0  # streaming: calibration activations beyond this go to disk
    sparsity: float | None = None  # sparse methods: fraction of each output row zeroed
    pattern: str | None = None  # sparse methods: N:M, N kept in every M consecutive inputs of a row
    rewind_from: str | None = None  # --reinit rewind: an earlier snapshot of the source's run
    sheared: ShearedOptions = field(default_factory=ShearedOptions)
    sparsegpt: SparseGPTOptions = field(default_factory=SparseGPTOptions)
    shrink_perturb: ShrinkPerturbOptions = field(default_factory=ShrinkPerturbOptions)

    def validate(self, methods: list[str], reinits: list[str], sparse: list[str] = (), rewinding: list[str] = ()) -> None:
        """Check the config; `sparse`: the methods that zero weights instead of removing units;
        `rewinding`: the reinits that take the weights of --rewind-from."""
        if not self.model:
            raise RegrowError("--model is required: an HF model folder")
        if not self.out:
            raise RegrowError("--out is required: the folder to write the pruned model to")
        if self.method not in methods:
            raise RegrowError(f"unknown method {self.method!r}; allowed: {', '.join(methods)}")
        if self.reinit not in reinits:
            raise RegrowError(f"unknown reinit {self.reinit!r}; allowed: {', '.join(reinits)}")
        if (self.reinit in rewinding) != (self.rewind_from is not None):
            raise RegrowError(f"--reinit {self.reinit} needs --rewind-from SNAPSHOT (an earlier snapshot of the source's run)"
                              if self.reinit in rewinding else
                              f"--rewind-from is for --reinit {' / '.join(rewinding) or 'rewind'}, not --reinit {self.reinit}")
        if self.rewind_from is not None and self.streaming:
            raise RegrowError("--rewind-from needs the model in memory; it does not run with --streaming")
        if self.method in sparse:
            self._validate_sparse()
        elif self.sparsity is not None or self.pattern is not None:
            raise RegrowError(f"--sparsity / --pattern apply to the sparse methods ({', '.join(sparse)}); method "
                              f"{self.method!r} removes whole units: give --target or --target-ratio")
        elif (self.target is None) == (self.target_ratio is None):
            raise RegrowError("give exactly one of --target SPEC and --target-ratio R")
        if self.target_ratio is not None and not 0 < self.target_ratio <= 1:
            raise RegrowError(f"--target-ratio is {self.target_ratio}; allowed: 0 < R <= 1")
        for key, value in (("seq_len", self.seq_len), ("batch_size", self.batch_size),
                           ("calibration_samples", self.calibration_samples), ("sheared.steps", self.sheared.steps),
                           ("sheared.log_every", self.sheared.log_every)):
            if value < 1:
                raise RegrowError(f"{key} is {value}; it must be >= 1")
        for key, value, allowed in (("batch_reduction", self.batch_reduction, BATCH_REDUCTIONS),
                                    ("depth_mode", self.depth_mode, DEPTH_MODES),
                                    ("expert_criterion", self.expert_criterion, EXPERT_CRITERIA),
                                    ("precision", self.precision, PRECISIONS), ("device", self.device, DEVICES)):
            if value not in allowed:
                raise RegrowError(f"{key} {value!r} is not supported; allowed: {', '.join(allowed)}")
        s = self.sheared
        if s.temperature <= 0:
            raise RegrowError(f"sheared.temperature is {s.temperature}; it must be > 0")
        for key, value in (("sheared.warmup_fraction", s.warmup_fraction), ("sheared.min_lr_fraction", s.min_lr_fraction),
                           ("sheared.target_ramp_fraction", s.target_ramp_fraction)):
            if not 0 <= value <= 1:
                raise RegrowError(f"{key} is {value}; allowed: 0..1")
        if min(s.lr_weights, s.lr_masks, s.lr_lambdas, s.grad_clip) < 0:
            raise RegrowError("sheared learning rates and grad_clip must be >= 0")
        if self.sparsegpt.block_size < 1:
            raise RegrowError(f"sparsegpt.block_size is {self.sparsegpt.block_size}; it must be >= 1")
        if not 0 <= self.sparsegpt.percdamp:
            raise RegrowError(f"sparsegpt.percdamp is {self.sparsegpt.percdamp}; it must be >= 0")

    def _validate_sparse(self) -> None:
        if self.target is not None:
            raise RegrowError(f"method {self.method!r} keeps the architecture: a --target shape does not apply (give "
                              "--sparsity S, --pattern N:M, or --target-ratio R for a fraction of non-zero parameters)")
        if sum(v is not None for v in (self.sparsity, self.pattern, self.target_ratio)) != 1:
            raise RegrowError(f"method {self.method!r} zeroes weights: give exactly one of --sparsity S, --pattern N:M "
                              "and --target-ratio R (the fraction of parameters left non-zero)")
        if self.sparsity is not None and not 0 < self.sparsity < 1:
            raise RegrowError(f"--sparsity is {self.sparsity}; allowed: 0 < S < 1 (the fraction of each row zeroed)")
        if self.pattern is not None:
            parse_pattern(self.pattern)
        if self.streaming:
            raise RegrowError(f"--streaming runs the structured methods; sparse method {self.method!r} runs in memory")


def parse_pattern(text: str) -> tuple[int, int]:
    """`N:M` -> (N, M): N weights kept in every M consecutive inputs of a row."""
    try:
        n, m = (int(part) for part in str(text).split(":"))
    except ValueError:
        raise RegrowError(f"--pattern {text!r} is not N:M (e.g. 2:4)") from None
    if not 0 < n < m:
        raise RegrowError(f"--pattern {text!r}: N must be at least 1 and below M (e.g. 2:4)")
    return n, m
