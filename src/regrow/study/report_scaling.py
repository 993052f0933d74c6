"""The report's "scaling" and "sensitivity" sections.

Scaling: every law that the study's runs support is fitted (study/scaling.py says on what);
a law the runs cannot support is listed with the reason instead. From the transfer fits, the
compute-saving factor each method is predicted to reach at 10x and 100x the study's budget.
Sensitivity: the JSON files that `regrow sensitivity` / `regrow probe` wrote with
`--out STUDY_DIR/analysis/NAME.json`.
"""

from __future__ import annotations

from pathlib import Path

from regrow.analysis.laws import FitOptions, LawFit, build_law
from regrow.analysis.plots import law_figure, probe_figure, sensitivity_figure
from regrow.errors import RegrowError
from regrow.reading import read_json
from regrow.study.scaling import finished_runs, predicted_savings, study_table

LAWS_IN_REPORT = ("transfer", "data", "annealing", "cpt", "chinchilla")
BUDGET_MULTIPLES = (1, 10, 100)


def _params(fit: LawFit) -> str:
    return ", ".join(f"{k} {v['value']:.3g}" + (f" [{v['low']:.3g}, {v['high']:.3g}]" if "low" in v else "")
                     for k, v in fit.parameters.items())


def _points(fit: LawFit) -> str:
    counts = fit.extras.get("counts")
    if not counts or not counts["extrapolated"]:
        return str(fit.goodness["points"])
    return f"{fit.goodness['points']} ({counts['extrapolated']} priced by extrapolating the control)"


def scaling_section(study_dir: Path, bootstrap: int = 20) -> tuple[list[str], dict, dict]:
    """(markdown lines, figures {name: fig}, json) of the scaling section."""
    options = FitOptions(bootstrap=bootstrap, keep=8)  # dozens of fits: fewer L-BFGS starts than the CLI's 16
    lines = ["## Scaling", "", "Fits of the study's runs (docs/SCALING.md: formulas, what each is fitted on, when to "
             "trust it); parameters with 95% bootstrap intervals.", ""]
    figures, out = {}, {}
    costs = {name.start_without_seed: summary for name, _, summary in finished_runs(study_dir)}
    for law in LAWS_IN_REPORT:
        try:
            fits = build_law(law).fit_table(study_table(law, study_dir), options)
        except RegrowError as err:
            lines += [f"### {law}", "", f"Not fitted: {err}.", ""]
            out[law] = {"error": str(err)}
            continue
        lines += [f"### {law}: {fits[0].formula}", "", "| fit | parameters | points | R^2 |", "|---|---|---|---|"]
        lines += [f"| {f.group or '-'} | {_params(f)} | {_points(f)} | {f.goodness['r2']:.3f} |" for f in fits]
        lines.append("")
        out[law] = [{"group": f.group, "parameters": f.parameters, "goodness": f.goodness, "extras": f.extras,
                     "warnings": f.warnings} for f in fits]
        figures[f"scaling: {law}"] = law_figure(fits[:6])
        if law == "transfer":
            lines += _saving_lines(fits, costs, out)
    return lines, figures, out


def _saving_lines(fits: list[LawFit], costs: dict, out: dict) -> list[str]:
    """Predicted compute-saving factors at larger budgets, from each method's transfer fit."""
    lines = ["Predicted compute-saving factor at larger continued-training budgets D_F (from the transfer fits; "
             "pruning FLOPs included; an extrapolation of the fitted power law): the FLOPs from-scratch training "
             "needs to match the loss the warm start reaches after D_F tokens, over the warm start's FLOPs. This "
             "targets the warm start's own loss, unlike the ranking's saving (which targets the control's final loss).",
             "",
             "| method [cell] | " + " | ".join(f"{m}x budget" for m in BUDGET_MULTIPLES) + " |",
             "|---|" + "---|" * len(BUDGET_MULTIPLES)]
    predictions = {}
    for fit in fits:
        run = fit.curves[0]
        budget = max(run.x)
        summary = costs.get(fit.group.split(" in group")[0])
        if summary is None:
            continue
        rows = predicted_savings(fit, summary["flops_per_token"], summary["compute"]["flops"]["pruning"],
                                 [budget * m for m in BUDGET_MULTIPLES])
        predictions[fit.group] = rows
        lines.append(f"| {fit.group} | " + " | ".join(f"{r['saving']:.2f}x" for r in rows) + " |")
    out["transfer_predicted_savings"] = predictions
    return lines + [""]


def sensitivity_section(study_dir: Path) -> tuple[list[str], dict, dict]:
    """Tables and figures of analysis/*.json written by `regrow sensitivity` and `regrow probe`."""
    lines, figures, out = [], {}, {}
    for path in sorted((study_dir / "analysis").glob("*.json")):
        data = read_json(path, "analysis record")
        kind = data.get("kind") if isinstance(data, dict) else None
        if kind == "sensitivity":
            gamma = f"{data['gammas'][-1]:g}"
            lines += [f"### {path.stem}: loss increase under perturbation (noise {data['noise']}, gamma {gamma}, "
                      f"{data['seeds']} seeds)", "", "| model | tokens | " + " | ".join(data["domains"]) + " |",
                      "|---|---|" + "---|" * len(data["domains"])]
            for m in data["models"]:
                cells = " | ".join(f"{m['sensitivity'][gamma][d]['mean']:+.4f} ± {m['sensitivity'][gamma][d]['sd']:.4f}"
                                   for d in data["domains"])
                lines.append(f"| {m['model']} | {m['tokens'] or '-'} | {cells} |")
            figures[f"sensitivity: {path.stem}"] = sensitivity_figure(data["models"])
        elif kind == "probe":
            lines += [f"### {path.stem}: fine-tuning probe on {data['finetune']} ({data['steps']} steps, LR {data['lr']:g})",
                      "", "| model | tokens | in-domain gain | out-of-domain change |", "|---|---|---|---|"]
            lines += [f"| {r['model']} | {r['tokens'] or '-'} | {r['in_domain_gain']:+.4f} | {r['out_of_domain_change']:+.4f} |"
                      for r in data["models"]]
            figures[f"probe: {path.stem}"] = probe_figure(data["models"])
        else:
            continue
        lines.append("")
        out[path.stem] = data
    if lines:
        lines = ["## Sensitivity", ""] + lines
    return lines, figures, out
