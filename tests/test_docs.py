"""The documentation stands alone: docs/ALGORITHMS.md covers every registered method, re-initialisation,
schedule and law; every cited section exists; links resolve inside the repository; nothing points
beside it; the README stays a front page."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ALGORITHMS = REPO / "docs" / "ALGORITHMS.md"


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (an installed copy): the repository checks need the clone")
    return [REPO / line for line in out.splitlines() if (REPO / line).is_file()]


def text_files() -> list[Path]:
    return [p for p in tracked_files() if p.suffix in {".py", ".md", ".yaml", ".sh", ".toml", ".txt", ""}]


def test_algorithms_names_every_registered_extension():
    from regrow.analysis.laws import LAWS
    from regrow.compress.methods import METHODS
    from regrow.compress.reinit import REINITS
    from regrow.schedules import SCHEDULES

    text = ALGORITHMS.read_text()
    sections = re.split(r"\n## ", text)
    for registry in (METHODS, REINITS, SCHEDULES, LAWS):
        for name in registry:
            # named in code style in the list at the top and in a section's title or body
            assert text.count(f"`{name}`") >= 2, f"{name} is not described in docs/ALGORITHMS.md"
            assert any(f"`{name}`" in section for section in sections[1:]), name


def test_every_cited_section_exists():
    titles = {int(m) for m in re.findall(r"^## (\d+)\. ", ALGORITHMS.read_text(), re.M)}
    assert titles == set(range(1, max(titles) + 1))
    cited = []
    for path in text_files():
        for number in re.findall(r"ALGORITHMS\.md\)? §(\d+)", path.read_text(errors="replace")):
            cited.append((path.relative_to(REPO), int(number)))
    assert len(cited) > 20
    assert [c for c in cited if c[1] not in titles] == []


def test_no_file_refers_to_a_path_beside_the_repository():
    outside = re.compile(r"\.\./" + "shared|parents\\[" + "2\\]")
    offenders = [str(p.relative_to(REPO)) for p in text_files() if outside.search(p.read_text(errors="replace"))]
    assert offenders == []


def test_markdown_links_resolve_inside_the_repository():
    broken = []
    for path in tracked_files():
        if path.suffix != ".md":
            continue
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target:
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.exists() or REPO not in (resolved, *resolved.parents):
                broken.append(f"{path.relative_to(REPO)} -> {target}")
    assert broken == []


def test_readme_is_a_front_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    for guide in ("DATA", "TRAINING", "PRUNING", "SPARSITY", "STUDIES", "SCALING", "DISTRIBUTED", "EXTENDING",
                  "ALGORITHMS", "ARCHITECTURE"):
        assert f"(docs/{guide}.md)" in readme, guide
    first_blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)[:2]
    assert "regrow demo" in first_blocks[0] and "pytest" in first_blocks[1]
