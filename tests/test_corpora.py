"""The built-in corpora: listed, extracted, read as `builtin:NAME`, shipped in the wheel, and
refused cleanly when a name is unknown, a folder is in the way or an archive is damaged."""

from __future__ import annotations

import hashlib
import json
import lzma
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from badinput import assert_refused
from conftest import paragraphs

from regrow.cli.main import main
from regrow.data import corpora

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "src" / "regrow" / "data" / "corpora"


def text_of(archive: Path) -> bytes:
    return lzma.decompress(archive.read_bytes())


def test_list_names_every_shipped_book_with_language_and_size(capsys):
    """Every archive in the package is listed once, with its language and its text's size, and
    documented in SOURCES.md (name, language, file)."""
    archives = sorted(SHIPPED.glob("*/*.txt.xz"))
    assert len(archives) == 8
    assert main(["corpora", "list"]) == 0
    rows = {line.split("\t")[0]: line.split("\t") for line in capsys.readouterr().out.splitlines()}
    table = [[cell.strip() for cell in line.split("|")[1:-1]]
             for line in (SHIPPED / "SOURCES.md").read_text().splitlines() if line.startswith("| ")][1:]
    documented = {cells[2]: cells for cells in table}
    assert sorted(documented) == [f"{a.parent.name}/{a.name}" for a in archives]
    for archive in archives:
        name, language = documented[f"{archive.parent.name}/{archive.name}"][:2]
        assert language == archive.parent.name and "public domain" in documented[f"{language}/{archive.name}"][-1]
        _, lang, size, source = rows[name]
        assert lang == language and source
        assert size == f"{len(text_of(archive)) / 1e6:.2f} MB"
    for language in ("en", "de"):
        total = sum(len(text_of(a)) for a in SHIPPED.glob(f"{language}/*.xz"))
        assert rows[language][2] == f"{total / 1e6:.2f} MB"
    assert len(rows) == len(archives) + 2


def test_extract_writes_the_texts_and_their_checksums_hold(tmp_path, capsys):
    assert main(["corpora", "extract", "de", str(tmp_path / "de")]) == 0
    written = sorted(p.name for p in (tmp_path / "de").iterdir())
    assert written == sorted(a.name.removesuffix(".xz") for a in SHIPPED.glob("de/*.xz"))
    for archive in SHIPPED.glob("de/*.xz"):
        assert (tmp_path / "de" / archive.name.removesuffix(".xz")).read_bytes() == text_of(archive)
    # an empty folder is fine too; one book by its name
    (tmp_path / "empty").mkdir()
    assert main(["corpora", "extract", "twain_tom_sawyer", str(tmp_path / "empty")]) == 0
    text = (tmp_path / "empty" / "twain_tom_sawyer.txt").read_bytes()
    assert text.startswith(b"            The Adventures of Tom Sawyer")
    assert hashlib.sha256(text).hexdigest() == "af86187348c457859a749c044fe244ec1e38c07c3943411f7eea038a9e4f4cee"


def test_builtin_input_reads_the_same_documents_as_the_extracted_folder(tmp_path, tokenizer_dir):
    """`data prepare builtin:en` = `data prepare` of the extracted texts: same tokens, and one
    document per blank-line paragraph of the three books."""
    assert main(["corpora", "extract", "en", str(tmp_path / "en")]) == 0
    for name, source in (("builtin", "builtin:en"), ("folder", str(tmp_path / "en"))):
        assert main(["data", "prepare", source, "--domain", "en", "--tokenizer", str(tokenizer_dir), "--out",
                     str(tmp_path / name), "--no-progress", "--engine", "hf"]) == 0
    shards = {name: sorted((tmp_path / name / "en").glob("*.bin")) for name in ("builtin", "folder")}
    assert [p.read_bytes() for p in shards["builtin"]] == [p.read_bytes() for p in shards["folder"]]
    splits = json.loads((tmp_path / "builtin" / "manifest.json").read_text())["domains"]["en"]["splits"]
    expected = sum(len(paragraphs(p.read_text())) for p in sorted((tmp_path / "en").iterdir()))
    assert splits["train"]["documents"] + splits["validation"]["documents"] == expected


def test_tokenizer_trains_on_builtin_books(tmp_path):
    assert main(["tokenizer", "train", "builtin:goethe_faust1", "--vocab-size", "300",
                 "--out", str(tmp_path / "tok")]) == 0
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert tok.decode(tok.encode("Gretchen")) == "Gretchen"


def test_unknown_name_is_refused_listing_the_known_ones(capsys, tmp_path, tokenizer_dir):
    line = assert_refused(capsys, ["corpora", "extract", "klingon", tmp_path / "out"], "'klingon'", [tmp_path])
    assert "en, de" in line and "twain_tom_sawyer" in line
    assert not (tmp_path / "out").exists()
    assert_refused(capsys, ["data", "prepare", "builtin:fr", "--domain", "fr", "--tokenizer", tokenizer_dir,
                            "--out", tmp_path / "data"], "unknown built-in corpus 'fr'", [tmp_path])


def test_extract_never_writes_into_a_folder_with_files(capsys, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    assert_refused(capsys, ["corpora", "extract", "en", target], str(target), [tmp_path])
    assert (target / "notes.txt").read_text() == "keep me"
    file_target = tmp_path / "afile"
    file_target.write_text("x")
    assert_refused(capsys, ["corpora", "extract", "en", file_target], str(file_target), [tmp_path])


@pytest.mark.parametrize("damage", ["flipped", "truncated", "missing"])
def test_damaged_archive_is_named_with_reinstall(capsys, tmp_path, monkeypatch, damage, tokenizer_dir):
    copy = tmp_path / "corpora"
    shutil.copytree(SHIPPED, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    victim = copy / "en" / "twain_tom_sawyer.txt.xz"
    data = bytearray(victim.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0xFF
        victim.write_bytes(bytes(data))
    elif damage == "truncated":
        victim.write_bytes(bytes(data[: len(data) // 2]))
    else:
        victim.unlink()
    monkeypatch.setattr(corpora, "ROOT", copy)
    watched = [tmp_path]
    for argv in (["corpora", "extract", "en", tmp_path / "out"],
                 ["data", "prepare", "builtin:en", "--domain", "en", "--tokenizer", tokenizer_dir, "--out", tmp_path / "d"],
                 ["tokenizer", "train", "builtin:twain_tom_sawyer", "--vocab-size", "300", "--out", tmp_path / "t"]):
        line = assert_refused(capsys, argv, str(victim), watched)
        assert "reinstall" in line
    # the other books are still readable
    assert main(["corpora", "extract", "tinyshakespeare", str(tmp_path / "ok")]) == 0


@pytest.mark.slow
def test_the_wheel_ships_every_archive_and_stays_small(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("regrow-*.whl")
    assert wheel.stat().st_size < 4 * 2**20
    names = set(zipfile.ZipFile(wheel).namelist())
    for archive in SHIPPED.glob("*/*.txt.xz"):
        assert f"regrow/data/corpora/{archive.parent.name}/{archive.name}" in names
    assert "regrow/data/corpora/SOURCES.md" in names
