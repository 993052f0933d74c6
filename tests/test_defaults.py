"""Defaults that work: one book prepared with no options, a model folder without tokenizer files."""

from __future__ import annotations

import json
import lzma
import shutil

import pytest
from conftest import paragraphs

from regrow.cli.main import main
from regrow.data.corpora import BOOKS


def test_one_book_with_default_options_gets_a_validation_split(tmp_path, tokenizer_dir, capsys):
    book = tmp_path / "twain_tom_sawyer.txt"  # a real book: the shipped archive, decompressed here
    book.write_bytes(lzma.decompress(BOOKS["twain_tom_sawyer"].path.read_bytes()))
    capsys.readouterr()
    assert main(["data", "prepare", str(book), "--domain", "en", "--tokenizer", str(tokenizer_dir),
                 "--out", str(tmp_path / "data"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "1 input file(s): each blank-line paragraph of a text file is one document" in captured.out
    splits = json.loads((tmp_path / "data" / "manifest.json").read_text())["domains"]["en"]["splits"]
    expected = len(paragraphs(book.read_text()))
    assert splits["train"]["documents"] + splits["validation"]["documents"] == expected
    assert splits["validation"]["documents"] >= 1


def test_many_files_stay_whole_documents(tmp_path, corpus, tokenizer_dir, capsys):
    files = sorted(corpus["prose"].glob("*.txt"))
    assert len(files) >= 100  # `auto` keeps files whole from 100 files on
    assert main(["data", "prepare", str(corpus["prose"]), "--domain", "p", "--tokenizer", str(tokenizer_dir),
                 "--out", str(tmp_path / "data"), "--no-progress", "--val-fraction", "0.1"]) == 0
    assert "paragraph" not in capsys.readouterr().out
    splits = json.loads((tmp_path / "data" / "manifest.json").read_text())["domains"]["p"]["splits"]
    assert splits["train"]["documents"] + splits["validation"]["documents"] == sum(
        1 for f in files if f.read_text().strip())


@pytest.mark.parametrize("family", ["qwen2", "gpt_neox"])
def test_model_folder_without_tokenizer_files_prunes_with_calibration_data(family, family_models, data_dir, tmp_path):
    """transformers 5 builds an empty tokenizer for such a folder; regrow must treat it as having none."""
    folder = tmp_path / "model"
    shutil.copytree(family_models[family], folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        (folder / name).unlink(missing_ok=True)
    out = tmp_path / "out"
    assert main(["prune", "--model", str(folder), "--data", str(data_dir), "--target-ratio", "0.6",
                 "--method", "activation", "--calibration-samples", "8", "--seq-len", "32", "--batch-size", "4",
                 "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "pruning_report.json").read_text())
    assert 0.45 < report["target"]["fraction_kept"] < 0.75  # the ratio asked for, to the shape grid's rounding
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() == report["target"]["parameters"]
