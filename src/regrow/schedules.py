"""Learning-rate schedules: small classes in a registry, each a pure function of the step.

`lr(step)` is the learning rate of optimizer update number `step` (1-based), so warmup reaches
lr_max exactly at `warmup_steps` and a decay ends exactly at `total_steps`. A schedule's
`total_steps` is its own, independent of how long one run lasts: a run can stop anywhere and
another phase can continue. Formulas: docs/ALGORITHMS.md §3.

Adding a schedule = one class with `@register("name")`; its dataclass fields are its config keys.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from regrow.config import from_dict
from regrow.errors import RegrowError
from regrow.registry import Registry

SCHEDULES: Registry[type[Schedule]] = Registry("schedule")
register = SCHEDULES.register


def _check_shape(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RegrowError(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")


@dataclass
class Schedule:
    """Keys every schedule has. A recipe's `schedule` mapping picks its class by `name`
    (`variants`, a tagged union of the config loader), so each schedule's own keys are typed."""

    lr_max: float = 3e-4
    lr_min: float = 3e-5
    warmup_steps: int = 0
    total_steps: int | None = None
    name: ClassVar[str] = ""
    variants: ClassVar[Registry[type[Schedule]]] = SCHEDULES

    def validate(self) -> None:
        if self.lr_max <= 0:
            raise RegrowError(f"schedule.lr_max is {self.lr_max}; it must be > 0")
        if self.lr_min < 0 or self.lr_min > self.lr_max:
            raise RegrowError(f"schedule.lr_min {self.lr_min} must be within [0, lr_max = {self.lr_max}]")
        if self.warmup_steps < 0:
            raise RegrowError(f"schedule.warmup_steps is {self.warmup_steps}; it must be >= 0")
        if self.total_steps is not None and self.total_steps < 1:
            raise RegrowError(f"schedule.total_steps is {self.total_steps}; it must be >= 1")

    @property
    def total(self) -> int:
        assert self.total_steps is not None, "total_steps is filled in by resolved()"
        return self.total_steps

    def resolved(self, default_total_steps: int | None) -> Schedule:
        """A validated copy whose total_steps is set (a run's train.steps when the recipe gives none)."""
        total = self.total_steps if self.total_steps is not None else default_total_steps
        if total is None:
            raise RegrowError("schedule.total_steps is not set and there is no train.steps to default to")
        schedule = dataclasses.replace(self, total_steps=total)
        schedule.validate()
        return schedule

    def warmup(self, step: int) -> float | None:
        """Linear warmup eta_max * t / T_w for t <= T_w, else None."""
        if self.warmup_steps > 0 and step <= self.warmup_steps:
            return self.lr_max * step / self.warmup_steps
        return None

    def __call__(self, step: int) -> float:
        raise NotImplementedError


@register("constant")
@dataclass
class Constant(Schedule):
    """Warmup, then lr_max forever."""

    def __call__(self, step: int) -> float:
        warm = self.warmup(step)
        return self.lr_max if warm is None else warm


@register("cosine")
@dataclass
class Cosine(Schedule):
    """Linear warmup, then cosine from lr_max to lr_min at total_steps (re-warm and re-decay)."""

    def validate(self) -> None:
        super().validate()
        if self.warmup_steps >= self.total:
            raise RegrowError(f"schedule.warmup_steps {self.warmup_steps} must be < total_steps {self.total}")

    def __call__(self, step: int) -> float:
        warm = self.warmup(step)
        if warm is not None:
            return warm
        x = min(1.0, (step - self.warmup_steps) / (self.total - self.warmup_steps))
        return self.lr_min + 0.5 * (self.lr_max - self.lr_min) * (1.0 + math.cos(math.pi * x))


DECAY_SHAPES = ("linear", "cosine", "sqrt", "exp")


@register("wsd")
@dataclass
class WarmupStableDecay(Schedule):
    """Warmup, constant lr_max, then a cooldown over the last `decay_fraction` of total_steps.

    Cooldown shapes f(x), x in [0, 1]: linear 1 - x; cosine (1 + cos(pi x)) / 2; sqrt 1 - sqrt(x);
    exp 0.5 ^ (x * decay_steps / half_life_steps) (MiniCPM). lr = lr_min + (lr_max - lr_min) f(x).
    """

    decay_fraction: float = 0.2
    decay_shape: str = "sqrt"
    half_life_steps: float | None = None

    def validate(self) -> None:
        super().validate()
        _check_shape("schedule.decay_shape", self.decay_shape, DECAY_SHAPES)
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise RegrowError(f"schedule.decay_fraction {self.decay_fraction} must be within [0, 1]")
        if self.warmup_steps > self.decay_start:
            raise RegrowError(
                f"schedule.warmup_steps {self.warmup_steps} runs past the decay start at step {self.decay_start}"
            )
        if self.half_life_steps is not None and self.half_life_steps <= 0:
            raise RegrowError(f"schedule.half_life_steps {self.half_life_steps} must be > 0")

    @property
    def decay_steps(self) -> int:
        return round(self.total * self.decay_fraction)

    @property
    def decay_start(self) -> int:
        return self.total - self.decay_steps

    def shape(self, x: float) -> float:
        if self.decay_shape == "linear":
            return 1.0 - x
        if self.decay_shape == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * x))
        if self.decay_shape == "sqrt":
            return 1.0 - math.sqrt(x)
        half_life = self.half_life_steps or max(self.decay_steps, 1) / 5.0
        return 0.5 ** (x * self.decay_steps / half_life)

    def __call__(self, step: int) -> float:
        warm = self.warmup(step)
        if warm is not None:
            return warm
        if step <= self.decay_start or self.decay_steps == 0:
            return self.lr_max
        x = min(1.0, (step - self.decay_start) / self.decay_steps)
        return self.lr_min + (self.lr_max - self.lr_min) * self.shape(x)


COOLDOWN_SHAPES = ("cosine", "inv_sqrt")


@register("infinite")
@dataclass
class Infinite(Schedule):
    """The "infinite" schedule of Ibrahim et al. 2024: four phases, no fixed token budget.

    1. warmup to lr_max over warmup_steps;
    2. cooldown to lr_const over cooldown_steps (cosine, or inv_sqrt with `alpha`);
    3. constant lr_const (checkpoints here are where future data resumes);
    4. exponential anneal to lr_min over the last `anneal_steps` of total_steps (0: never).
    """

    lr_const: float = 1.65e-4
    cooldown_steps: int = 0
    cooldown_shape: str = "cosine"
    alpha: float = 10.0
    anneal_steps: int = 0

    def validate(self) -> None:
        super().validate()
        _check_shape("schedule.cooldown_shape", self.cooldown_shape, COOLDOWN_SHAPES)
        if not self.lr_min <= self.lr_const <= self.lr_max:
            raise RegrowError(
                f"schedule.lr_const {self.lr_const} must be within [lr_min = {self.lr_min}, lr_max = {self.lr_max}]"
            )
        if self.cooldown_steps < 0 or self.anneal_steps < 0:
            raise RegrowError("schedule.cooldown_steps and schedule.anneal_steps must be >= 0")
        if self.alpha <= 0:
            raise RegrowError(f"schedule.alpha {self.alpha} must be > 0")
        if self.anneal_steps > 0 and self.lr_min <= 0:
            raise RegrowError("schedule.lr_min must be > 0 for the exponential anneal (anneal_steps > 0)")
        if self.cooldown_end > self.anneal_start:
            raise RegrowError(
                f"schedule phases overlap: warmup + cooldown end at step {self.cooldown_end}, "
                f"after the anneal start at step {self.anneal_start} (total_steps - anneal_steps)"
            )

    @property
    def cooldown_end(self) -> int:
        return self.warmup_steps + self.cooldown_steps

    @property
    def anneal_start(self) -> int:
        return self.total - self.anneal_steps

    def cooldown(self, x: float) -> float:
        if self.cooldown_shape == "cosine":
            return self.lr_const + 0.5 * (self.lr_max - self.lr_const) * (1.0 + math.cos(math.pi * x))

        def g(v: float) -> float:
            return 1.0 / math.sqrt(1.0 + self.alpha * v) - 1.0

        return self.lr_max + (self.lr_const - self.lr_max) * g(x) / g(1.0)

    def __call__(self, step: int) -> float:
        warm = self.warmup(step)
        if warm is not None:
            return warm
        if step <= self.cooldown_end and self.cooldown_steps > 0:
            return self.cooldown((step - self.warmup_steps) / self.cooldown_steps)
        if self.anneal_steps == 0 or step <= self.anneal_start:
            return self.lr_const
        x = min(1.0, (step - self.anneal_start) / self.anneal_steps)
        return self.lr_const * (self.lr_min / self.lr_const) ** x


@register("inverse_sqrt")
@dataclass
class InverseSqrt(Schedule):
    """Warmup, then lr_max * sqrt(timescale / step), never below lr_min; timescale = warmup or 1."""

    def __call__(self, step: int) -> float:
        warm = self.warmup(step)
        if warm is not None:
            return warm
        timescale = max(self.warmup_steps, 1)
        return max(self.lr_min, self.lr_max * math.sqrt(timescale / max(step, 1)))


def build_schedule(spec: dict[str, Any], default_total_steps: int | None = None) -> Schedule:
    """Build and validate a schedule from its config mapping (`name` plus the class's keys)."""
    return from_dict(Schedule, spec, where="schedule").resolved(default_total_steps)

