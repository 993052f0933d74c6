"""`regrow report STUDY_DIR`: report.md and a self-contained report.html (plots embedded).

Everything is computed from the runs in the study's index: loss curves, forgetting vs.
adaptation, validation loss against FLOPs beside the from-scratch control, compute-saving
factors (ALGORITHMS.md §8) with their spread over seeds, dynamic mixture weights, a ranking
and a plain statement of what won.
"""

from __future__ import annotations

import base64
import html
import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from regrow.analysis.plots import png_bytes
from regrow.atomic import write_text_atomic
from regrow.config import read_yaml
from regrow.errors import RegrowError
from regrow.study.plan import RunName
from regrow.study.report_scaling import scaling_section, sensitivity_section
from regrow.study.runner import INDEX_FILE, STUDY_FILE, study_status
from regrow.train.metrics import read_metrics


def _curve(metrics: list[dict], summary: dict, domains: list[str]) -> tuple[np.ndarray, np.ndarray]:
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


def _png(fig) -> str:
    return base64.b64encode(png_bytes(fig)).decode()


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def build_report(out_dir: str | Path, fit_bootstrap: int = 20) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    if not (out / INDEX_FILE).is_file():
        raise RegrowError(f"{str(out)!r} is not a study folder (no {INDEX_FILE}); run `regrow study STUDY.yaml` first")
    study = read_yaml(out / STUDY_FILE)
    old, new = study["data"]["old"], study["data"]["new"]
    counts, rows = study_status(out)
    prune_rows = {r["key"]: r for r in rows if r["kind"] == "prune"}
    runs = []
    for row in rows:
        if row["kind"] != "train" or row["status"] != "done":
            continue
        summary = row["result"]
        run_dir = Path(summary["out_dir"])
        name = row["key"].removeprefix("train-")
        parts = RunName.parse(row["key"])
        metrics = read_metrics(run_dir)
        runs.append({"key": row["key"], "name": name, "label": _label(name), "summary": summary, "metrics": metrics,
                     "curve": _curve(metrics, summary, new), "start": parts.start, "cell": parts.cell,
                     "start_without_seed": parts.start_without_seed})
    if not runs:
        raise RegrowError(f"study {str(out)!r} has no finished training run yet; run `regrow study` first")

    # compute-saving factor: each run against the scratch control of the same cell (schedule, replay, budget, seed)
    controls = {r["cell"]: r for r in runs if r["start"].startswith("scratch-")}
    for r in runs:
        control = controls.get(r["cell"])
        r["saving"] = None if control is None or control is r else saving_factor(r["curve"], control["curve"])
        d = r["summary"]["domains"]
        r["new_loss"] = statistics.mean(d[x]["loss_end"] for x in new)
        r["forgetting"] = r["summary"]["forgetting"]
        r["adaptation"] = r["summary"]["adaptation"]
        r["flops"] = r["summary"]["compute"]["flops"]["total"]

    figures = {}
    for domain in [*new, *old]:
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in runs:
            evals = [row for row in r["metrics"] if row["event"] == "eval"]
            ax.plot([e["tokens"] for e in evals], [e[f"eval/{domain}/loss"] for e in evals], marker=".", label=r["label"])
        ax.set(xlabel="continued-training tokens", ylabel=f"{domain} validation loss", title=f"{domain} ({'new' if domain in new else 'old'})")
        ax.legend(fontsize=6)
        figures[f"loss curves: {domain}"] = _png(fig)
        plt.close(fig)
    if old:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in runs:
            ax.scatter(r["adaptation"], r["forgetting"])
            ax.annotate(r["label"], (r["adaptation"], r["forgetting"]), fontsize=6)
        ax.set(xlabel="adaptation (fall of new-domain loss)", ylabel="forgetting (rise of old-domain loss)",
               title="forgetting vs. adaptation")
        figures["forgetting vs. adaptation"] = _png(fig)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        flops, losses = r["curve"]
        style = "--" if r["start"].startswith("scratch-") else "-"
        ax.plot(flops, losses, style, marker=".", label=r["label"])
    ax.set(xscale="log", xlabel="FLOPs (pruning + teacher + training)", ylabel="new-domain validation loss",
           title="validation loss vs. compute (dashed: from scratch)")
    ax.legend(fontsize=6)
    figures["loss vs. FLOPs"] = _png(fig)
    plt.close(fig)
    dynamic = [r for r in runs if any(row["event"] == "mixture" for row in r["metrics"])]
    if dynamic:
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in dynamic:
            events = [row for row in r["metrics"] if row["event"] == "mixture"]
            for key in [k for k in events[0] if k.startswith("mixture/")]:
                ax.plot([e["step"] for e in events], [e[key] for e in events], marker=".", label=f"{r['label']} {key[8:]}")
        ax.set(xlabel="step", ylabel="domain weight", title="dynamic batch loading")
        ax.legend(fontsize=6)
        figures["domain weights"] = _png(fig)
        plt.close(fig)

    # ranking: by starting point (method / reinit / target) and cell, spread over seeds
    groups = defaultdict(list)
    for r in runs:
        groups[(r["start_without_seed"], r["cell"][:-1])].append(r)
    ranking = []
    for (start, cell), members in groups.items():
        savings = [m["saving"] for m in members if m["saving"] is not None]
        ranking.append({
            "start": start, "cell": "-".join(str(c) for c in cell), "seeds": len(members),
            "new_loss": statistics.mean(m["new_loss"] for m in members),
            "new_loss_sd": statistics.stdev([m["new_loss"] for m in members]) if len(members) > 1 else 0.0,
            "forgetting": _mean([m["forgetting"] for m in members]),
            "adaptation": _mean([m["adaptation"] for m in members]),
            "flops": statistics.mean(m["flops"] for m in members),
            "saving": statistics.mean(savings) if savings else None,
            "saving_sd": statistics.stdev(savings) if len(savings) > 1 else (0.0 if savings else None),
        })
    ranking.sort(key=lambda x: x["new_loss"])
    headline = _headline(ranking)
    sections, analysis = [], {}
    for lines, section_figures, data in (scaling_section(out, fit_bootstrap), sensitivity_section(out)):
        sections += lines
        analysis.update(data)
        for name, fig in section_figures.items():
            figures[name] = _png(fig)
            plt.close(fig)
    report = {"counts": counts, "ranking": ranking, "headline": headline, "figures": list(figures), "analysis": analysis}
    write_text_atomic(out / "report.md", _markdown(study, counts, ranking, headline, prune_rows, figures, sections))
    write_text_atomic(out / "report.html", _html(study, counts, ranking, headline, figures, sections))
    write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _label(name: str) -> str:
    return name.replace("-none-", "-").replace("-seed0", "")


def _headline(ranking: list[dict]) -> str:
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


def _table(ranking: list[dict]) -> list[list[str]]:
    head = ["rank", "start", "cell", "seeds", "new loss", "forgetting", "adaptation", "FLOPs", "saving vs scratch"]
    rows = [head]
    for i, r in enumerate(ranking, 1):
        saving = "-" if r["saving"] is None else f"{r['saving']:.2f}x ± {r['saving_sd']:.2f}"
        rows.append([str(i), r["start"], r["cell"], str(r["seeds"]), f"{r['new_loss']:.3f} ± {r['new_loss_sd']:.3f}",
                     _fmt(r["forgetting"], "+.3f"), _fmt(r["adaptation"], "+.3f"), f"{r['flops']:.3g}", saving])
    return rows


def headline_table(ranking: list[dict]) -> str:
    rows = _table(ranking)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def _markdown(study, counts, ranking, headline, prune_rows, figures, sections: list[str]) -> str:
    parts = [f"# Study report: {study['out_dir']}", "", headline, "",
             "Runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()), "", "## Ranking", "", headline_table(ranking), ""]
    parts += ["Saving = FLOPs the from-scratch control of the same cell needs to reach its final loss / FLOPs "
              "this run needs to reach that loss (pruning, teacher and training FLOPs; ALGORITHMS.md section 8).", ""]
    parts += sections
    parts += ["## Pruning runs", "", "| run | parameters kept | FLOPs | max logit diff |", "|---|---|---|---|"]
    for key, row in prune_rows.items():
        if row["status"] == "done":
            res = row["result"]
            parts.append(f"| {key} | {res['target']['parameters']:,} ({res['target']['fraction_kept']:.0%}) | "
                         f"{res['flops']:.3g} | {res['exactness']['max_abs_logit_diff']:.1e} |")
    parts += ["", "## Figures", "", "The plots are embedded in report.html: " + ", ".join(figures) + ".", "",
              "## Study file (resolved)", "", "```yaml", _yaml(study), "```", ""]
    return "\n".join(parts)


def _yaml(data) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False).rstrip()


def _sections_html(lines: list[str]) -> str:
    """The markdown of the analysis sections as HTML: headings, pipe tables, paragraphs."""
    parts, table = [], []
    for line in [*lines, ""]:
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                table.append(line.strip("|").split(" | "))
            continue
        if table:
            head, *body = table
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in row) + "</tr>"
                                   for row in body) + "</table>")
            table = []
        if line.startswith("### "):
            parts.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.startswith("## "):
            parts.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line:
            parts.append(f"<p>{html.escape(line)}</p>")
    return "".join(parts)


def _html(study, counts, ranking, headline, figures, sections: list[str]) -> str:
    rows = _table(ranking)
    table = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in rows[0]) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:]) + "</table>"
    headline_html = html.escape(headline).replace("**", "")
    images = "".join(f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
                     for name, data in figures.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>regrow study report</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}img{max-width:100%}</style></head><body>"
            f"<h1>Study report: {html.escape(study['out_dir'])}</h1><p>{headline_html}</p>"
            f"<p>Runs: {html.escape(', '.join(f'{n} {s}' for s, n in counts.items()))}</p><h2>Ranking</h2>{table}"
            f"{_sections_html(sections)}"
            f"<h2>Figures</h2>{images}<h2>Study file (resolved)</h2><pre>{html.escape(_yaml(study))}</pre></body></html>\n")
