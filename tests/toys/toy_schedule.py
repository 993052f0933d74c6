"""A toy LR schedule in one file: lr_max for the first half of total_steps, lr_min after."""

from dataclasses import dataclass

from regrow.schedules import SCHEDULES, Schedule


@SCHEDULES.register("toy-step")
@dataclass
class StepDown(Schedule):
    """lr_max, then lr_min from the middle of total_steps (a test's toy)"""

    def __call__(self, step: int) -> float:
        return self.lr_max if step <= self.total // 2 else self.lr_min
