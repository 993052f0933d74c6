"""Helpers of the bad-input suite: run a command in-process and check what a user would see.

Every case asserts: the exit code, exactly one line on stderr that starts with `regrow: error:`
and names the expected text, no traceback, and the watched file trees identical before and
after (nothing created, nothing deleted, every pre-existing file byte-identical).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import yaml

from regrow.cli.main import main


def tree(*roots: Path) -> dict[str, str]:
    """path -> sha256 (files) or 'dir' (folders), for every entry under the roots."""
    out = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        if root.is_file():
            out[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
            continue
        for dirpath, _, filenames in os.walk(root):
            out[dirpath] = "dir"
            for name in filenames:
                path = Path(dirpath) / name
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_cli(argv: list[str]) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's own refusals
        return int(exit_.code or 0)


def assert_refused(capsys, argv, expect: str, watched: list[Path], code: int = 2) -> str:
    """Run argv; it must fail cleanly with `code`, name `expect`, and leave `watched` untouched."""
    capsys.readouterr()
    before = tree(*watched)
    rc = run_cli(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    lines = err.splitlines()
    assert rc == code, f"exit {rc}, stderr: {err}"
    assert len(lines) == 1 and lines[0].startswith("regrow: error: "), err
    assert "Traceback" not in err + captured.out
    assert expect in lines[0], f"{expect!r} not in {lines[0]!r}"
    assert tree(*watched) == before, "files changed"
    return lines[0]


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


class CreatesFile:
    """A pickle payload: unpickling it creates `marker` (the proof that code ran)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload_bytes(marker: Path) -> bytes:
    return pickle.dumps(CreatesFile(marker))
