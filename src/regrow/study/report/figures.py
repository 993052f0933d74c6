"""The report's figures, drawn to be read: one panel per cell (small multiples, shared axes),
the starting model by colour (the from-scratch control black, the unpruned source grey), the
schedule by line style, the replay fraction by marker; legends outside the data, no text on
the points."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.ticker

from regrow.analysis.plots import pyplot
from regrow.study.report.data import Run, StudyData

LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P")


class Style:
    """Colour, line style and marker of each run, the same in every figure of the report."""

    def __init__(self, runs: list[Run]):
        starts = sorted({r.name.start_without_seed for r in runs if r.name.role == "pruned"})
        self.colour = {s: f"C{i % 10}" for i, s in enumerate(starts)}
        for run in runs:
            if run.name.role != "pruned":
                self.colour[run.name.start_without_seed] = "black" if run.name.role == "scratch" else "0.55"
        self.schedules = sorted({r.name.schedule.partition(".")[0] for r in runs})
        self.replays = sorted({r.name.replay for r in runs}, key=lambda x: float(x.removeprefix("replay") or 0))

    def of(self, run: Run) -> dict:
        return {"color": self.colour[run.name.start_without_seed],
                "linestyle": LINESTYLES[self.schedules.index(run.name.schedule.partition(".")[0]) % len(LINESTYLES)],
                "marker": MARKERS[self.replays.index(run.name.replay) % len(MARKERS)]}

    def legend(self, fig, with_lines: bool = True) -> None:
        """One legend for the whole figure, right of the panels: starts, schedules, replays."""
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=c, lw=2, label=s) for s, c in self.colour.items()]
        if with_lines:
            handles += [Line2D([], [], color="0.3", linestyle=LINESTYLES[i % len(LINESTYLES)], label=f"schedule {s}")
                        for i, s in enumerate(self.schedules)]
        handles += [Line2D([], [], color="0.3", linestyle="", marker=MARKERS[i % len(MARKERS)], label=r)
                    for i, r in enumerate(self.replays)]
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)


def _cells(runs: list[Run]) -> dict[tuple, list[Run]]:
    cells: dict[tuple, list[Run]] = {}
    for run in runs:
        cells.setdefault(run.name.cell[:-1], []).append(run)  # seeds of a cell share a panel
    return cells


def _cell_title(cell: tuple) -> str:
    schedule, replay, tokens = cell
    base, _, dynamic = schedule.partition(".")
    return f"{base}, {replay.replace('replay', 'replay ')}" + (", dynamic loading" if dynamic else "")


def small_multiples(data: StudyData, style: Style, points: Callable[[Run], tuple[list, list]], xlabel: str,
                    ylabel: str, title: str, xlog: bool = False):
    """One panel per cell: every run of the cell as a line of `points(run)`."""
    plt = pyplot()
    cells = _cells(data.runs)
    cols = min(3, len(cells))
    rows = -(-len(cells) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, (cell, runs) in zip(axes.flat, sorted(cells.items())):
        for run in sorted(runs, key=lambda r: r.name.role != "scratch"):
            x, y = points(run)
            ax.plot(x, y, markersize=3, lw=1.4, **style.of(run))
        ax.set_title(_cell_title(cell), fontsize=9)
        ax.grid(alpha=0.3)
        if xlog:
            ax.set_xscale("log")
            # less than a decade of FLOPs: matplotlib labels the minor ticks too, and they overlap
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in axes.flat[len(cells):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    fig.suptitle(title)
    fig.tight_layout()
    style.legend(fig)
    return fig


def loss_vs_compute(data: StudyData, style: Style):
    """The headline figure: new-domain loss against FLOPs (pruning included), warm starts vs. scratch."""
    return small_multiples(data, style, lambda r: (r.curve[0].tolist(), r.curve[1].tolist()),
                           "FLOPs (pruning + teacher + training)", "new-domain loss",
                           "Validation loss against compute, per cell (black: from scratch)", xlog=True)


def loss_curves(data: StudyData, style: Style, domain: str):
    def points(run: Run):
        evals = run.events("eval")
        return [e["tokens"] for e in evals], [e[f"eval/{domain}/loss"] for e in evals]

    kind = "new" if domain in data.new else "old"
    return small_multiples(data, style, points, "continued-training tokens", f"{domain} loss",
                           f"{domain} ({kind} domain) validation loss, per cell")


def forgetting_vs_adaptation(data: StudyData, style: Style):
    """One point per run: colour = start, marker = replay, hollow = the second (third, ...) schedule."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for run in data.runs:
        s = style.of(run)
        filled = run.name.schedule.partition(".")[0] == style.schedules[0]
        ax.scatter(run.summary["adaptation"], run.summary["forgetting"], marker=s["marker"], s=40,
                   facecolors=s["color"] if filled else "none", edgecolors=s["color"], linewidths=1.2)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set(xlabel="adaptation (fall of the new-domain loss)", ylabel="forgetting (rise of the old-domain loss)",
           title=f"Forgetting vs. adaptation (filled: {style.schedules[0]}; hollow: other schedules)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    style.legend(fig, with_lines=False)
    return fig


def domain_weights(data: StudyData, style: Style):
    """One panel per run with dynamic batch loading: the weight of each domain over the steps."""
    dynamic = [r for r in data.runs if r.events("mixture")]
    if not dynamic:
        return None
    plt = pyplot()
    cols = min(4, len(dynamic))
    rows = -(-len(dynamic) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, run in zip(axes.flat, dynamic):
        events = run.events("mixture")
        for i, key in enumerate(k for k in events[0] if k.startswith("mixture/")):
            ax.plot([e["step"] for e in events], [e[key] for e in events], color=f"C{i}", label=key.removeprefix("mixture/"))
        ax.set_title(run.label, fontsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(dynamic):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.supxlabel("step")
    fig.supylabel("domain weight")
    fig.suptitle("Dynamic batch loading: domain weights")
    fig.tight_layout()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    return fig
