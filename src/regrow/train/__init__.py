"""Training: LR schedules, the continual pre-training loop, evaluation, checkpoints, metrics."""
