"""The report's "scaling" and "sensitivity" sections.

Scaling: every registered law is fitted on what its `study_table` takes from the study's runs
(in the law's order, `report_rank`); a law the runs cannot support is listed with the reason
instead; a law adds its own lines (transfer: the predicted compute-saving factors).
Sensitivity: the JSON files that `regrow sensitivity` / `regrow probe` wrote with
`--out STUDY_DIR/analysis/NAME.json`.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from multiprocessing import get_context
from pathlib import Path

from regrow.analysis.laws import LAWS, FitOptions, LawFit
from regrow.analysis.laws.base import Law
from regrow.analysis.plots import law_figure, probe_figure, sensitivity_figure
from regrow.analysis.table import Table
from regrow.errors import RegrowError, UnreadableFile
from regrow.reading import read_json
from regrow.study.executors.local import die_with_parent
from regrow.study.scaling import StudyRunSet


def _params(fit: LawFit) -> str:
    return ", ".join(f"{k} {v['value']:.3g}" + (f" [{v['low']:.3g}, {v['high']:.3g}]" if "low" in v else "")
                     for k, v in fit.parameters.items())


def _points(fit: LawFit) -> str:
    counts = fit.extras.get("counts")
    if not counts or not counts["extrapolated"]:
        return str(fit.goodness["points"])
    return f"{fit.goodness['points']} ({counts['extrapolated']} priced by extrapolating the control)"


def _fit(law: type[Law], table: Table, options: FitOptions, one_thread: bool = False) -> list[LawFit] | RegrowError:
    """One law's fits (an error says why it could not be fitted). In a worker process
    (`one_thread`): one BLAS thread, or the processes' spinning BLAS threads starve each other on
    the fits' tiny matrices (3.6x slower on 2 cores)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1) if one_thread else nullcontext():
        try:
            return law().fit_table(table, options)
        except RegrowError as err:
            return err


def fit_laws(study: StudyRunSet, options: FitOptions, jobs: int = 1) -> dict[str, list[LawFit] | RegrowError]:
    """Every registered law fitted on its study table, in report order; with `jobs` > 1 the laws
    are fitted in that many processes (the same fits: each is deterministic)."""
    names = sorted(LAWS, key=lambda name: LAWS[name].report_rank)
    results: dict[str, list[LawFit] | RegrowError] = {}
    tables = {}
    for name in names:
        try:
            tables[name] = LAWS[name]().study_table(study)
        except UnreadableFile:  # a damaged run file stops the report; it is not a law that cannot be fitted
            raise
        except RegrowError as err:
            results[name] = err
    workers = min(jobs, len(tables))
    if workers <= 1:
        results.update({name: _fit(LAWS[name], table, options) for name, table in tables.items()})
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            futures = {name: pool.submit(_fit, LAWS[name], table, options, True) for name, table in tables.items()}
            results.update({name: future.result() for name, future in futures.items()})
    return {name: results[name] for name in names}


def scaling_section(study_dir: Path, bootstrap: int = 20, jobs: int = 1) -> tuple[list[str], dict, dict]:
    """(markdown lines, figures {name: fig}, json) of the scaling section."""
    options = FitOptions(bootstrap=bootstrap, keep=8)  # dozens of fits: fewer L-BFGS starts than the CLI's 16
    lines = ["## Scaling", "", "Fits of the study's runs (docs/SCALING.md: formulas, what each is fitted on, when to "
             "trust it); parameters with 95% bootstrap intervals.", ""]
    figures, out = {}, {}
    study = StudyRunSet(study_dir, None)
    for law, fits in fit_laws(study, options, jobs).items():
        if isinstance(fits, RegrowError):
            err = fits
            lines += [f"### {law}", "", f"Not fitted: {err}.", ""]
            out[law] = {"error": str(err)}
            continue
        lines += [f"### {law}: {fits[0].formula}", "", "| fit | parameters | points | R^2 |", "|---|---|---|---|"]
        lines += [f"| {f.group or '-'} | {_params(f)} | {_points(f)} | {f.goodness['r2']:.3f} |" for f in fits]
        lines.append("")
        lines += _cautions(fits)
        out[law] = [{"group": f.group, "parameters": f.parameters, "goodness": f.goodness, "extras": f.extras,
                     "warnings": f.warnings} for f in fits]
        figures[f"scaling: {law}"] = law_figure(fits[:6])
        lines += LAWS[law]().report_lines(fits, study, out)
    return lines, figures, out


def _cautions(fits: list[LawFit]) -> list[str]:
    items = [f"- {f.group or f.law}: {doubt}" for f in fits for doubt in f.doubts()]
    return ["Cautions (fits the data do not determine well; their extrapolations mean little):", "", *items, ""] if items else []


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
