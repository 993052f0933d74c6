"""What happens around the training step, one small class each, registered in CALLBACKS: the
trainer composes the built-in ones from the recipe (train log, evaluation, dynamic batch
loading, snapshots, checkpoints, in that order) and appends the recipe's `train.callbacks`
by registered name.

Adding a callback = one file with a `@CALLBACKS.register("name")` Callback subclass; an
installed package can offer its callbacks through the `regrow.callbacks` entry-point group.
"""

from regrow.train.callbacks import checkpointing, dynamic_loading, evaluation, snapshots, train_log  # noqa: F401
from regrow.train.callbacks.base import CALLBACKS, Callback, StepInfo

__all__ = ["CALLBACKS", "Callback", "StepInfo"]
