"""The report's numbers, from the study's index and its runs: each finished training run with its
loss-against-FLOPs curve, its compute-saving factor against the from-scratch control of its cell
(docs/ALGORITHMS.md §8), and the ranking of starting points per cell with the spread over seeds."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regrow.config import read_yaml
from regrow.errors import RegrowError
from regrow.study.plan import RunName
from regrow.study.runner import INDEX_FILE, STUDY_FILE, study_status
from regrow.train.metrics import read_metrics


@dataclass
class Run:
    """One finished training run of the study."""

    key: str
    name: RunName
    summary: dict
    metrics: list[dict]
    curve: tuple[np.ndarray, np.ndarray]  # (FLOPs, mean new-domain loss) at each evaluation
    new_loss: float = 0.0
    saving: float | None = None

    @property
    def label(self) -> str:
        return self.key.removeprefix("train-").replace("-none-", "-").replace("-seed0", "")

    def events(self, kind: str) -> list[dict]:
        return [row for row in self.metrics if row["event"] == kind]


@dataclass
class StudyData:
    out: Path
    study: dict
    counts: dict[str, int]
    runs: list[Run]
    prune_rows: dict[str, dict]
    ranking: list[dict] = field(default_factory=list)

    @property
    def old(self) -> list[str]:
        return self.study["data"]["old"]

    @property
    def new(self) -> list[str]:
        return self.study["data"]["new"]


def loss_curve(metrics: list[dict], summary: dict, domains: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(FLOPs, mean loss over `domains`) at every evaluation of a run; FLOPs include pruning and teacher."""
    compute = summary["compute"]
    per_token = summary["flops_per_token"] + (compute["flops"]["teacher"] / summary["tokens"] if summary["tokens"] else 0)
    flops, losses = [], []
    for row in metrics:
        if row["event"] == "eval":
            flops.append(compute["flops"]["pruning"] + per_token * row["tokens"])
            losses.append(statistics.mean(row[f"eval/{d}/loss"] for d in domains))
    return np.array(flops), np.array(losses)


def flops_to_reach(flops: np.ndarray, losses: np.ndarray, target: float) -> float | None:
    """First FLOPs at which the (linearly interpolated) loss curve reaches `target`; None if never."""
    if len(losses) == 0:
        return None
    if losses[0] <= target:
        return float(flops[0])
    for i in range(1, len(losses)):
        if losses[i] <= target:
            f0, f1, l0, l1 = flops[i - 1], flops[i], losses[i - 1], losses[i]
            return float(f0 + (f1 - f0) * (l0 - target) / (l0 - l1))
    return None


def saving_factor(method: tuple[np.ndarray, np.ndarray], control: tuple[np.ndarray, np.ndarray]) -> float | None:
    """Control FLOPs to reach its final loss / method FLOPs to reach the same loss (§8)."""
    control_flops, control_losses = control
    target = float(control_losses.min())
    needed_control = flops_to_reach(control_flops, control_losses, target)
    needed_method = flops_to_reach(*method, target)
    if needed_control is None or not needed_method:
        return None
    return needed_control / needed_method


def load_study(out: Path) -> StudyData:
    """The study file, its index and every finished training run (with curves and savings)."""
    if not (out / INDEX_FILE).is_file():
        raise RegrowError(f"{str(out)!r} is not a study folder (no {INDEX_FILE}); run `regrow study STUDY.yaml` first")
    study = read_yaml(out / STUDY_FILE)
    counts, rows = study_status(out)
    runs = []
    for row in rows:
        if row["kind"] == "train" and row["status"] == "done":
            summary = row["result"]
            metrics = read_metrics(Path(summary["out_dir"]))
            runs.append(Run(row["key"], RunName.parse(row["key"]), summary, metrics,
                            loss_curve(metrics, summary, study["data"]["new"])))
    if not runs:
        raise RegrowError(f"study {str(out)!r} has no finished training run yet; run `regrow study` first")
    data = StudyData(out, study, counts, runs, {r["key"]: r for r in rows if r["kind"] == "prune"})
    controls = {r.name.cell: r for r in runs if r.name.role == "scratch"}
    for run in runs:
        control = controls.get(run.name.cell)
        run.saving = None if control is None or control is run else saving_factor(run.curve, control.curve)
        run.new_loss = statistics.mean(run.summary["domains"][d]["loss_end"] for d in data.new)
    data.ranking = ranking(runs)
    return data


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def ranking(runs: list[Run]) -> list[dict]:
    """Starting points (method / reinit / target) per cell, best new-domain loss first, with the
    spread over seeds."""
    groups = defaultdict(list)
    for run in runs:
        groups[(run.name.start_without_seed, run.name.cell[:-1])].append(run)
    out = []
    for (start, cell), members in groups.items():
        savings = [m.saving for m in members if m.saving is not None]
        losses = [m.new_loss for m in members]
        out.append({
            "start": start, "cell": "-".join(str(c) for c in cell), "seeds": len(members),
            "new_loss": statistics.mean(losses), "new_loss_sd": statistics.stdev(losses) if len(losses) > 1 else 0.0,
            "forgetting": _mean([m.summary["forgetting"] for m in members]),
            "adaptation": _mean([m.summary["adaptation"] for m in members]),
            "flops": statistics.mean(m.summary["compute"]["flops"]["total"] for m in members),
            "saving": statistics.mean(savings) if savings else None,
            "saving_sd": statistics.stdev(savings) if len(savings) > 1 else (0.0 if savings else None),
        })
    out.sort(key=lambda x: x["new_loss"])
    return out


def headline(ranking: list[dict]) -> str:
    """The sentence at the top: which start won, against the control and the source of its cell."""
    pruned = [r for r in ranking if not r["start"].startswith(("scratch", "source"))]
    if not pruned:
        return "No pruned run finished, so there is nothing to compare yet."
    best = pruned[0]
    scratch = [r for r in ranking if r["start"].startswith("scratch") and r["cell"] == best["cell"]]
    source = [r for r in ranking if r["start"].startswith("source") and r["cell"] == best["cell"]]
    text = (f"**{best['start']}** won ({best['cell']}): final new-domain loss {best['new_loss']:.3f}"
            + (f" against {scratch[0]['new_loss']:.3f} for the same shape trained from scratch" if scratch else "")
            + (f" and {source[0]['new_loss']:.3f} for the unpruned source" if source else "") + ".")
    if best["saving"] is not None:
        text += (f" It reached the from-scratch control's final loss with {best['saving']:.1f}x less compute"
                 " (pruning included).")
    elif scratch:
        text += " It did not reach the from-scratch control's final loss within its budget."
    rivals = [r for r in pruned if r["cell"] == best["cell"] and r["start"] != best["start"]]
    if rivals:
        text += f" Next in that cell: {rivals[0]['start']} ({rivals[0]['new_loss']:.3f}, +{rivals[0]['new_loss'] - best['new_loss']:.3f})."
    return text
