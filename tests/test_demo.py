import json
import statistics
from pathlib import Path

import pytest

from regrow.cli.main import main
from regrow.study.demo import run_demo

STARTS = {"sheared-r0.5-none", "activation-r0.5-none", "depth-r0.5-none", "scratch-r0.5", "source"}
TOKENS = 8 * 8 * 128  # the quick demo: 8 steps x 8 sequences x 128 tokens
CELLS = {f"{s}-replay{r}-tok{TOKENS}" for s in ("cosine0", "infinite1") for r in ("0", "0.05")}
CELLS |= {f"{s}.dyn1-replay0.05-tok{TOKENS}" for s in ("cosine0", "infinite1")}  # dynamic loading: replay cells only


def test_quick_demo_runs_the_study_and_prints_the_table(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    results = (tmp_path / "demo" / "results.md").read_text()
    assert results.split("\n\n")[1].strip() in out  # the headline table is printed
    study = tmp_path / "demo" / "study"
    report = json.loads((study / "report.json").read_text())
    assert {(r["start"], r["cell"]) for r in report["ranking"]} == {(s, c) for s in STARTS for c in CELLS}
    assert report["counts"] == {"pending": 0, "running": 0, "done": 1 + 4 + 5 * 6, "failed": 0}
    assert (study / "report.html").read_text().count("data:image/png;base64,") == len(report["figures"]) >= 5
    assert "domain weights" in report["figures"]
    # the analysis sections: scaling fits of the runs, sensitivity and probe of the starting models
    assert {"scaling: transfer", "scaling: data", "sensitivity: sensitivity", "probe: probe"} <= set(report["figures"])
    markdown = (study / "report.md").read_text()
    assert "## Scaling" in markdown and "## Sensitivity" in markdown and "Predicted compute-saving factor" in markdown
    sensitivity = json.loads((study / "analysis" / "sensitivity.json").read_text())
    assert len(sensitivity["models"]) == 5  # base, three pruned, the scratch init
    assert all(m["sensitivity"]["1"]["code"]["mean"] > 0 for m in sensitivity["models"][:1])
    names = [Path(m["model"]).name for m in sensitivity["models"]]
    assert names == ["model", "prune-activation-r0.5-none-seed0", "prune-depth-r0.5-none-seed0",
                     "prune-sheared-r0.5-none-seed0", "scratch-r0.5-seed0"]
    means = []
    for m in sensitivity["models"]:  # every model, every domain: mean and sd of its seeds' values
        for domain in ("prose", "code"):
            cell = m["sensitivity"]["1"][domain]
            assert cell["mean"] == pytest.approx(statistics.mean(cell["values"]), abs=1e-12)
            assert cell["sd"] == pytest.approx(statistics.stdev(cell["values"]), abs=1e-12)
            means.append(cell["mean"])
    assert statistics.mean(means) > 0  # noise raises the loss on average
    # a second call reuses every finished run
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    assert "[demo] run " not in capsys.readouterr().out


@pytest.mark.slow
def test_full_demo_pruned_models_beat_scratch(tmp_path):
    report = run_demo(tmp_path / "demo")
    by = {(r["start"], r["cell"]): r for r in report["ranking"]}
    for cell in {c for _, c in by}:
        scratch = by[("scratch-r0.5", cell)]["new_loss"]
        for method in ("sheared-r0.5-none", "activation-r0.5-none"):
            assert by[(method, cell)]["new_loss"] < scratch
    cosine = [c for c in {c for _, c in by} if c.startswith("cosine0-")]
    no_replay = next(c for c in cosine if "replay0-" in c)
    replay = next(c for c in cosine if "replay0.05" in c)
    assert by[("source", replay)]["forgetting"] < by[("source", no_replay)]["forgetting"]
