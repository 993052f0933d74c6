"""Figures of the analysis commands: law fits (data against fitted curves) and sensitivity curves."""

from __future__ import annotations

import io
from pathlib import Path

from regrow.analysis.laws.base import LawFit
from regrow.atomic import write_bytes_atomic
from regrow.paths import PNG_SOFTWARE


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": PNG_SOFTWARE})
    return buf.getvalue()


def law_figure(fits: list[LawFit], extra_curves: list[tuple[str, list, list]] = ()):
    """One panel per fit: observed points, fitted lines in the same colour; extra (label, x, y) dashed."""
    import textwrap

    plt = pyplot()
    cols = min(3, len(fits))
    rows = -(-len(fits) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(fits):]:
        ax.set_visible(False)
    for ax, fit in zip(axes.flat, fits):
        for i, curve in enumerate(fit.curves):
            colour = f"C{i % 10}"
            ax.scatter(curve.x, curve.y, s=12, color=colour, label=curve.label)
            if curve.fit_x:
                ax.plot(curve.fit_x, curve.fit_y, color=colour, lw=1)
        for label, x, y in extra_curves:
            ax.plot(x, y, "--", color="k", lw=1, label=label)
        ax.set(xlabel=fit.axes["xlabel"], ylabel=fit.axes["ylabel"], xscale=fit.axes["xscale"], yscale=fit.axes["yscale"])
        ax.set_title(textwrap.fill(f"{fit.law}{f': {fit.group}' if fit.group else ''}", 50), fontsize=8)
        observed = [y for c in fit.curves for y in c.y]
        if fit.axes["yscale"] == "linear" and observed:  # fitted lines may shoot up near step 1: keep the data in view
            low, high = min(observed), max(observed)
            ax.set_ylim(low - 0.1 * (high - low), high + 0.25 * (high - low))
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def _token_axis(ax, results: list[dict]) -> list:
    """x = each model's pre-training tokens when all are known, else its position in the list."""
    have_tokens = all(r["tokens"] is not None for r in results)
    xs = [r["tokens"] if have_tokens else i for i, r in enumerate(results)]
    ax.set(xlabel="pre-training tokens" if have_tokens else "model (in the order given)",
           xscale="log" if have_tokens and min(xs) > 0 else "linear")
    if not have_tokens:
        ax.set_xticks(xs, [r["model"].split("/")[-2] if r["model"].endswith("/model") else r["model"].split("/")[-1]
                           for r in results], rotation=30, fontsize=6, ha="right")
    return xs


def sensitivity_figure(results: list[dict]):
    """Loss increase against the models' pre-training tokens, one line per (gamma, domain)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = _token_axis(ax, results)
    first = results[0]["sensitivity"]
    for gamma, domains in first.items():
        for domain in domains:
            means = [r["sensitivity"][gamma][domain]["mean"] for r in results]
            sds = [r["sensitivity"][gamma][domain]["sd"] for r in results]
            ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label=f"gamma {gamma}, {domain}")
    ax.set(ylabel="loss increase under perturbation", title="parameter sensitivity")
    ax.legend(fontsize=6)
    return fig


def probe_figure(results: list[dict]):
    """In-domain gain and out-of-domain loss change of the same fine-tuning, per checkpoint."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = _token_axis(ax, results)
    ax.plot(xs, [r["in_domain_gain"] for r in results], marker="o", label="in-domain gain (loss fall)")
    ax.plot(xs, [r["out_of_domain_change"] for r in results], marker="s", label="out-of-domain change (loss rise)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(ylabel="loss change", title="fine-tuning probe")
    ax.legend(fontsize=7)
    return fig


def save_figure(fig, path: str | Path) -> None:
    write_bytes_atomic(path, png_bytes(fig))
    pyplot().close(fig)
