import pytest

from regrow.cli.main import main
from regrow.study.demo import run_demo


def test_quick_demo_prints_the_table(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    table = (tmp_path / "demo" / "results.md").read_text()
    assert table.strip() in out
    for run in ("no-replay", "cosine-replay5", "infinite-replay5"):
        assert f"| {run} |" in table
        assert (tmp_path / "demo" / "runs" / run / "model" / "model.safetensors").is_file()
    # a second call reuses every finished step
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    assert "pre-training" in capsys.readouterr().out


@pytest.mark.slow
def test_full_demo_replay_reduces_forgetting(tmp_path):
    rows = {r["run"]: r for r in run_demo(tmp_path / "demo", progress=False)}
    assert rows["cosine-replay5"]["forgetting"] < rows["no-replay"]["forgetting"]
    assert rows["infinite-replay5"]["forgetting"] < rows["no-replay"]["forgetting"]
    assert all(r["adaptation"] > 1.0 for r in rows.values())
