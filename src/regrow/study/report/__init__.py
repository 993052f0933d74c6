"""`regrow report STUDY_DIR`: report.md, a self-contained report.html and report.json.

Everything comes from the runs in the study's index (data.py): the headline and the figure of
loss against compute first, then the ranking (tables.py), the scaling and sensitivity sections
(sections.py), the other figures (figures.py: small multiples per cell), the pruning runs and
the resolved study file; writers.py turns that into files.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from regrow.study.report import figures
from regrow.study.report.data import StudyData, headline, load_study
from regrow.study.report.sections import scaling_section, sensitivity_section
from regrow.study.report.tables import headline_table, pruning_table
from regrow.study.report.writers import Block, Figure, write_report

SAVING_NOTE = ("Saving = FLOPs the from-scratch control of the same cell needs to reach its final loss / FLOPs this run "
               "needs to reach that loss (pruning, teacher and training FLOPs; docs/ALGORITHMS.md §8).")


def top(data: StudyData, style: figures.Style, sentence: str) -> list[Block]:
    """Title, the headline sentence beside the headline figure, the run counts."""
    return [f"# Study report: {data.study['out_dir']}", "", sentence, "",
            Figure.of("loss vs. FLOPs", figures.loss_vs_compute(data, style)),
            "Runs: " + ", ".join(f"{n} {s}" for s, n in data.counts.items()), ""]


def ranking_section(data: StudyData) -> list[Block]:
    return ["## Ranking", "", headline_table(data.ranking), "", SAVING_NOTE, ""]


def analysis_sections(data: StudyData, fit_bootstrap: int, jobs: int) -> tuple[list[Block], dict]:
    """Scaling fits and sensitivity / probe results, each followed by its figures."""
    blocks, numbers = [], {}
    for lines, section_figures, found in (scaling_section(data.out, fit_bootstrap, jobs), sensitivity_section(data.out)):
        blocks += lines
        blocks += [Figure.of(name, fig) for name, fig in section_figures.items()]
        numbers.update(found)
    return blocks, numbers


def figure_section(data: StudyData, style: figures.Style) -> list[Block]:
    blocks: list[Block] = ["## Figures", ""]
    for domain in [*data.new, *data.old]:
        blocks.append(Figure.of(f"loss curves: {domain}", figures.loss_curves(data, style, domain)))
    if data.old:
        blocks.append(Figure.of("forgetting vs. adaptation", figures.forgetting_vs_adaptation(data, style)))
    weights = figures.domain_weights(data, style)
    if weights is not None:
        blocks.append(Figure.of("domain weights", weights))
    return blocks


def build_report(out_dir: str | Path, fit_bootstrap: int = 20, jobs: int = 1) -> dict:
    """Write the report of the study in `out_dir`; returns its numbers (also report.json).
    `jobs` > 1 fits the scaling laws in that many processes."""
    data = load_study(Path(out_dir))
    style = figures.Style(data.runs)
    sentence = headline(data.ranking)
    analysis, numbers = analysis_sections(data, fit_bootstrap, jobs)
    blocks = [*top(data, style, sentence), *ranking_section(data), *analysis, *figure_section(data, style),
              "## Pruning runs", "", pruning_table(data.prune_rows), ""]
    study_yaml = yaml.safe_dump(data.study, sort_keys=False).rstrip()
    report = {"counts": data.counts, "ranking": data.ranking, "headline": sentence,
              "figures": [b.name for b in blocks if isinstance(b, Figure)], "analysis": numbers}
    write_report(data.out, f"regrow study report: {data.study['out_dir']}", blocks,
                 f"## Study file (resolved)\n\n```yaml\n{study_yaml}\n```\n", study_yaml, report)
    return report


__all__ = ["build_report", "headline_table"]
