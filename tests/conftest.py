"""Shared fixtures: small real corpora (stdlib docstrings and code), a tokenizer, a data folder.

Everything is made by the tests themselves, once per session, in a temporary folder.
"""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

import pytest

from regrow.cli.main import main

MODULES = (
    "json/__init__.py", "json/decoder.py", "json/encoder.py", "textwrap.py", "argparse.py", "csv.py",
    "pathlib.py", "shutil.py", "tempfile.py", "string.py", "difflib.py", "fractions.py", "statistics.py",
    "heapq.py", "bisect.py", "calendar.py", "configparser.py", "dataclasses.py", "functools.py", "glob.py",
)


def stdlib_texts() -> tuple[list[str], list[str]]:
    """(docstrings, code) from a fixed list of standard-library modules."""
    root = Path(sysconfig.get_paths()["stdlib"])
    prose, code = [], []
    for rel in MODULES:
        source = (root / rel).read_text()
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    prose.append(doc)
        code.append(source)
    return prose, code


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Two folders of text files: prose (one docstring per file) and code (one module per file)."""
    root = tmp_path_factory.mktemp("corpus")
    prose, code = stdlib_texts()
    for name, docs in (("prose", prose), ("code", code)):
        folder = root / name
        folder.mkdir()
        for i, doc in enumerate(docs):
            (folder / f"{i:04d}.txt").write_text(doc)
    return {"prose": root / "prose", "code": root / "code", "root": root}


@pytest.fixture(scope="session")
def tokenizer_dir(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    assert main(["tokenizer", "train", str(corpus["prose"]), str(corpus["code"]), "--vocab-size", "512", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def data_dir(corpus, tokenizer_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "data"
    for domain in ("prose", "code"):
        args = ["data", "prepare", str(corpus[domain]), "--domain", domain, "--tokenizer", str(tokenizer_dir),
                "--out", str(out), "--val-fraction", "0.1", "--no-progress"]
        assert main(args) == 0
    return out


TINY_LLAMA = {
    "model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
}


def recipe(tokenizer_dir: Path, data_dir: Path, out_dir: Path, **overrides) -> dict:
    """A tiny but complete training recipe; keyword overrides replace top-level sections."""
    base = {
        "out_dir": str(out_dir),
        "seed": 0,
        "tokenizer": str(tokenizer_dir),
        "model": {"config": dict(TINY_LLAMA)},
        "data": {"path": str(data_dir), "mixture": {"prose": 0.5, "code": 0.5}, "seq_len": 32},
        "train": {"steps": 6, "batch_size": 4, "log_every": 1, "eval_tokens": 512, "progress": False},
        "schedule": {"name": "cosine", "lr_max": 3e-3, "lr_min": 3e-4, "warmup_steps": 2},
    }
    base.update(overrides)
    return base
