"""One study job, run to completion in whatever process an executor chose: a pruning run or a
training run (resumed from its last checkpoint when a killed study runs again)."""

from __future__ import annotations

import shutil
from pathlib import Path

from regrow.config import from_dict
from regrow.reading import read_json


def execute(kind: str, config: dict, threads: int | None = None) -> tuple[dict, float]:
    """Run one job to completion (resuming a killed training run); returns (result, FLOPs)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if kind == "prune":
        from regrow.compress.config import PruneConfig
        from regrow.compress.prune import prune
        from regrow.compress.report import REPORT

        out = Path(config["out"])
        report_path = out / REPORT
        if not report_path.is_file():
            shutil.rmtree(out, ignore_errors=True)
            prune(from_dict(PruneConfig, config), echo=lambda _: None)
        report = read_json(report_path, "pruning report", ("source", "target", "flops", "exactness", "wall_seconds",
                                                           "calibration_tokens"))
        result = {k: report[k] for k in ("source", "target", "flops", "exactness", "wall_seconds", "calibration_tokens",
                                         "sparsity") if k in report}
        return result, float(report["flops"])

    from regrow.train import checkpoint as ckpt
    from regrow.train.config import RunConfig
    from regrow.train.trainer import train

    out = Path(config["out_dir"])
    summary_path = out / "summary.json"
    if not (summary_path.is_file() and (out / "model").is_dir()):
        resume = ckpt.latest_checkpoint(out / "checkpoints") is not None
        if not resume:
            shutil.rmtree(out, ignore_errors=True)  # killed before its first checkpoint: start again
        train(from_dict(RunConfig, config), resume=resume)
    summary = read_json(summary_path, "run summary", ("compute",))
    return summary, float(summary["compute"]["flops"]["total"])
