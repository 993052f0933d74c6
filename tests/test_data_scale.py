"""Data at scale (issue 17): sharded stores, resumable preparation, tokenizer engines, datasets
and Parquet inputs, bad lines, dedup."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import recipe
from transformers import AutoTokenizer

from regrow.cli.main import main
from regrow.data.prepare import dedup_key, is_validation
from regrow.data.sampler import MixtureSampler
from regrow.data.store import TokenStore
from regrow.models.evaluate import validation_windows


def prepare(inputs, domain, tokenizer_dir, out, *extra) -> int:
    return main(["data", "prepare", *map(str, inputs), "--domain", domain, "--tokenizer", str(tokenizer_dir),
                 "--out", str(out), "--no-progress", *map(str, extra)])


def expected_tokens(tokenizer_dir, docs, val_fraction, split="train"):
    """Plain transformers: each document of the split, tokenized, then EOS."""
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    out = []
    for doc in docs:
        if is_validation(doc, val_fraction) == (split == "validation"):
            out += tok.encode(doc, add_special_tokens=False) + [tok.eos_token_id]
    return out


@pytest.fixture(scope="module")
def sharded_and_single(corpus, tokenizer_dir, tmp_path_factory):
    """The same two domains prepared into 2 KiB shards and into one file per split."""
    root = tmp_path_factory.mktemp("sharding")
    for name, extra in (("sharded", ["--shard-size", "2KiB"]), ("single", [])):
        for domain in ("prose", "code"):
            assert prepare([corpus[domain]], domain, tokenizer_dir, root / name, "--val-fraction", "0.1", *extra) == 0
    return root / "sharded", root / "single"


def test_shards_are_bounded_listed_and_read_as_one_stream(sharded_and_single):
    sharded, single = TokenStore(sharded_and_single[0]), TokenStore(sharded_and_single[1])
    for name in ("prose", "code"):
        info = sharded.domain(name).info
        for split in ("train", "validation"):
            shards = info["shards"][split]
            assert len(shards) > 3 if split == "train" else len(shards) >= 1
            sizes = [(sharded.path / name / s["file"]).stat().st_size for s in shards]
            assert max(sizes) <= 2048 and all(size == 2048 for size in sizes[:-1])
            assert sum(s["tokens"] for s in shards) == info["splits"][split]["tokens"]
            on_disk = np.concatenate([np.fromfile(sharded.path / name / s["file"], dtype=np.uint16) for s in shards])
            assert np.array_equal(on_disk, np.asarray(single.domain(name).tokens(split)))
            stream = sharded.domain(name).tokens(split)
            # slices across shard boundaries, single tokens, negative indices
            for start in (0, 1023, 1024, 1500, len(stream) - 40):
                assert np.array_equal(stream[start : start + 40], on_disk[start : start + 40])
            assert stream[-1] == on_disk[-1] and stream[1024] == on_disk[1024]


def test_sampler_and_evaluation_read_sharded_like_single(sharded_and_single):
    """Same batches at every step (so resuming at any step and the mixture are unchanged), same
    validation windows, same domain counts."""
    sharded, single = (TokenStore(p) for p in sharded_and_single)
    mixture = {"prose": 0.3, "code": 0.7}
    a = MixtureSampler(sharded, mixture, seq_len=64, micro_batch=4, grad_accum=2, seed=5)
    b = MixtureSampler(single, mixture, seq_len=64, micro_batch=4, grad_accum=2, seed=5)
    for step in (0, 1, 7, 123, 9999):
        for micro in (0, 1):
            for x, y in zip(a.batch(step, micro), b.batch(step, micro)):
                assert torch_equal(x, y)
    assert a.domain_counts(range(200)) == b.domain_counts(range(200))
    counts = a.domain_counts(range(200))
    assert abs(counts["code"] / sum(counts.values()) - 0.7) < 0.01
    for name in ("prose", "code"):
        assert np.array_equal(validation_windows(sharded.domain(name).tokens("validation"), 32, 4096),
                              validation_windows(single.domain(name).tokens("validation"), 32, 4096))


def torch_equal(x, y) -> bool:
    return bool((x == y).all())


def test_a_store_from_before_shards_reads_the_same(sharded_and_single, tmp_path):
    """One `SPLIT.bin` per split and no `shards` key (the old layout) gives the same tokens."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(sharded_and_single[1], old)
    manifest = json.loads((old / "manifest.json").read_text())
    for name, info in manifest["domains"].items():
        for split in ("train", "validation"):
            (shard,) = info["shards"][split]
            (old / name / shard["file"]).rename(old / name / f"{split}.bin")
        del info["shards"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    legacy, single = TokenStore(old), TokenStore(sharded_and_single[1])
    for name in ("prose", "code"):
        for split in ("train", "validation"):
            assert np.array_equal(np.asarray(legacy.domain(name).tokens(split)), np.asarray(single.domain(name).tokens(split)))


def test_training_on_a_sharded_store_equals_the_single_file_store(sharded_and_single, tokenizer_dir, tmp_path):
    """Losses and validation losses of a run (stopped and resumed half-way on the sharded store)
    are those of the run on the one-file store."""
    from regrow.config import from_dict
    from regrow.train.config import RunConfig
    from regrow.train.trainer import train

    def losses(data, out, steps, resume=False):
        data_recipe = recipe(tokenizer_dir, data, out)
        data_recipe["train"].update(steps=steps, eval_every=3, checkpoint_every=3)
        data_recipe["schedule"]["total_steps"] = 6
        train(from_dict(RunConfig, data_recipe), resume=resume)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [(r.get("step"), r.get("loss"), r.get("val_loss")) for r in rows if "loss" in r or "val_loss" in r]

    single = losses(sharded_and_single[1], tmp_path / "single", 6)
    losses(sharded_and_single[0], tmp_path / "sharded", 3)
    sharded = losses(sharded_and_single[0], tmp_path / "sharded", 6, resume=True)
    assert single and sharded == single


def _shard_bytes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.bin"))}


@pytest.fixture(scope="module")
def books():
    """The built-in English and German books (shipped in the package)."""
    return ["builtin:en", "builtin:de"]


def test_prepare_killed_and_run_again_gives_identical_shards(books, tokenizer_dir, tmp_path):
    """kill -9 during `data prepare`; the same command again resumes (skips finished shards) and
    writes byte for byte the shards of an uninterrupted run."""
    args = lambda out: [sys.executable, "-m", "regrow", "data", "prepare", *map(str, books), "--domain", "books",  # noqa: E731
                        "--tokenizer", str(tokenizer_dir), "--out", str(out), "--shard-size", "64KiB", "--engine", "hf",
                        "--workers", "1", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    subprocess.run(args(tmp_path / "whole"), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    progress = killed / ".books.partial" / "progress.json"
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    held = {**env, "REGROW_PAUSE_AT": "prepare-progress@3", "REGROW_PAUSE_DIR": str(pauses)}  # regrow.pause_points
    process = subprocess.Popen(args(killed), env=held, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None and not list(pauses.glob("prepare-progress@3.*")):
        time.sleep(0.05)
    assert list(pauses.glob("prepare-progress@3.*")), "the preparation never saved its third progress"
    process.send_signal(signal.SIGKILL)  # held right after its third progress save: mid-way, on any machine
    process.wait()
    assert progress.is_file(), "no progress was saved before the kill"
    done_before = json.loads(progress.read_text())["documents"]
    assert not (killed / "books").exists()
    result = subprocess.run(args(killed), env=env, capture_output=True, text=True, check=True)
    assert "resumed after document" in result.stdout
    info = TokenStore(killed).domain("books").info
    reference = TokenStore(tmp_path / "whole").domain("books").info
    assert info["resumed_at_document"] >= done_before > 0
    assert _shard_bytes(killed / "books") == _shard_bytes(tmp_path / "whole" / "books")
    assert len(_shard_bytes(killed / "books")) > 10
    assert {k: info[k] for k in ("splits", "shards", "sources", "bytes")} == \
           {k: reference[k] for k in ("splits", "shards", "sources", "bytes")}
    assert not (killed / ".books.partial").exists()


def test_leftover_of_other_arguments_is_started_over(corpus, tokenizer_dir, tmp_path):
    partial = tmp_path / "store" / ".prose.partial"
    partial.mkdir(parents=True)
    (partial / "progress.json").write_text(json.dumps({"key": "another", "documents": 5}))
    (partial / "train-00000.bin").write_bytes(b"\x01\x00" * 10)
    assert prepare([corpus["prose"]], "prose", tokenizer_dir, tmp_path / "store", "--val-fraction", "0.1") == 0
    assert prepare([corpus["prose"]], "prose", tokenizer_dir, tmp_path / "fresh", "--val-fraction", "0.1") == 0
    assert _shard_bytes(tmp_path / "store" / "prose") == _shard_bytes(tmp_path / "fresh" / "prose")
    assert TokenStore(tmp_path / "store").domain("prose").info["resumed_at_document"] == 0


# --- engines ---------------------------------------------------------------------------------

def _split_regex_tokenizer(docs, out: Path) -> Path:
    """A Llama-3 style byte-level BPE: a Split regex before a regex-less ByteLevel, NFC normalizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    tokenizer = Tokenizer(models.BPE(ignore_merges=True))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(docs, trainer=trainer)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>").save_pretrained(out)
    return out


def _corpora(books):
    from regrow.data.sources import ReadOptions, SourceRecord, iter_builtin, iter_documents

    def head(docs, nbytes=1_500_000):
        out, size = [], 0
        for doc in docs:
            out.append(doc)
            size += len(doc)
            if size > nbytes:
                break
        return out

    return {"en": list(iter_documents([str(books[0])], SourceRecord(), ReadOptions(unit="paragraph"))),
            "de": list(iter_documents([str(books[1])], SourceRecord(), ReadOptions(unit="paragraph"))),
            "stdlib-prose": head(iter_builtin("stdlib-prose", SourceRecord())),
            "stdlib-code": head(iter_builtin("stdlib-code", SourceRecord()))}


@pytest.mark.parametrize("style", ["regrow-trained", "split-regex"])
def test_tiktoken_engine_gives_the_hf_ids_on_real_corpora(style, books, tokenizer_dir, tmp_path):
    """Every document of the English and German books and of the stdlib domains: the tiktoken
    engine's ids are plain transformers' ids, and `auto` picks it."""
    from regrow.data.engines import ENGINES, choose_engine
    from regrow.data.tokenizer import load_tokenizer

    corpora = _corpora(books)
    folder = tokenizer_dir if style == "regrow-trained" else _split_regex_tokenizer(
        [d for docs in corpora.values() for d in docs[:400]], tmp_path / "tok")
    reference = AutoTokenizer.from_pretrained(str(folder))
    engine = ENGINES["tiktoken"].for_tokenizer(load_tokenizer(folder))
    for name, docs in corpora.items():
        docs = docs + ["a literal <|endoftext|> inside a text", "e\u0301 composed (NFC)  \r\n\ttabs"]
        got = engine.encode(docs)
        want = reference(docs, add_special_tokens=False)["input_ids"]
        mismatched = [i for i, (g, w) in enumerate(zip(got, want)) if g.tolist() != w]
        assert not mismatched, (name, mismatched[:3])
    assert choose_engine(load_tokenizer(folder), "auto", corpora["en"][:200]).engine.name == "tiktoken"


def _toy_bpe(out: Path, normalizer=None) -> Path:
    """A byte-level BPE whose vocabulary has 'abc' but whose merges never reach it from 'a b c'
    (b+c is merged first, a+bc is no merge): tiktoken's whole-word lookup would give 'abc'."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from regrow.data.engines.tiktoken_bpe import bytes_to_unicode

    vocab = {"<|endoftext|>": 0}
    for char in bytes_to_unicode().values():
        vocab[char] = len(vocab)
    for token in ("bc", "ab", "abc"):
        vocab[token] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab, [("b", "c"), ("a", "b"), ("ab", "c")]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>").save_pretrained(out)
    return out


def test_engine_falls_back_to_hf_when_tiktoken_differs_or_cannot(tmp_path, capsys):
    from tokenizers import normalizers

    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": f"abc {i} abcab bca"}) + "\n" for i in range(40)))
    differs = _toy_bpe(tmp_path / "differs")
    assert prepare([docs], "d", differs, tmp_path / "a", "--val-fraction", "0.2") == 0
    engine = TokenStore(tmp_path / "a").domain("d").info["engine"]
    assert engine["name"] == "hf" and "gave other ids than hf for document 0" in engine["reason"]
    tok = AutoTokenizer.from_pretrained(str(differs))
    texts = [f"abc {i} abcab bca" for i in range(40)]
    assert np.asarray(TokenStore(tmp_path / "a").domain("d").tokens("train")).tolist() == \
        expected_tokens(differs, texts, 0.2)
    assert tok.encode("abc", add_special_tokens=False) == [tok.convert_tokens_to_ids("a"), tok.convert_tokens_to_ids("bc")]
    lower = _toy_bpe(tmp_path / "lower", normalizers.Lowercase())
    assert prepare([docs], "d", lower, tmp_path / "b", "--val-fraction", "0.2") == 0
    assert "normalizer Lowercase" in TokenStore(tmp_path / "b").domain("d").info["engine"]["reason"]
    capsys.readouterr()
    assert prepare([docs], "d", lower, tmp_path / "c", "--val-fraction", "0.2", "--engine", "tiktoken") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--engine tiktoken cannot be used" in err[0] and "normalizer Lowercase" in err[0]
    assert not (tmp_path / "c").exists()


# --- inputs ----------------------------------------------------------------------------------

DOCS = [f"Record {i}: a document about parsing files, numbers and words. " * (2 + i % 4) for i in range(80)]


def test_parquet_folder_and_datasets_folders(tmp_path, tokenizer_dir, capsys):
    """A Parquet folder (several files, read in batches), `save_to_disk` output (a Dataset, and a
    DatasetDict with --dataset-split) and a CSV folder `load_dataset` reads: each gives plain
    transformers' tokens of its texts."""
    import datasets

    parquet = tmp_path / "parquet"
    parquet.mkdir()
    for part in range(3):
        pq.write_table(pa.table({"body": DOCS[part::3], "n": list(range(len(DOCS[part::3])))}),
                       parquet / f"part-{part}.parquet", row_group_size=7)
    ordered = DOCS[0::3] + DOCS[1::3] + DOCS[2::3]
    saved = datasets.Dataset.from_dict({"body": DOCS, "n": list(range(80))})
    saved.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": saved.select(range(10)), "web": saved}).save_to_disk(str(tmp_path / "dict"))
    csv = tmp_path / "csv"
    csv.mkdir()
    saved.to_csv(str(csv / "data.csv"), index=False)
    cases = {"parquet": ([parquet], [], ordered), "saved": ([tmp_path / "saved"], [], DOCS),
             "dict": ([tmp_path / "dict"], ["--dataset-split", "web"], DOCS), "csv": ([csv], [], DOCS)}
    for name, (inputs, extra, texts) in cases.items():
        assert prepare(inputs, name, tokenizer_dir, tmp_path / "store", "--text-field", "body",
                       "--val-fraction", "0.2", *extra) == 0, name
        domain = TokenStore(tmp_path / "store").domain(name)
        for split in ("train", "validation"):
            assert np.asarray(domain.tokens(split)).tolist() == expected_tokens(tokenizer_dir, texts, 0.2, split), name
    sources = TokenStore(tmp_path / "store").domain("saved").info["sources"]
    arrow = [s for s in sources if s["path"].endswith(".arrow")]
    assert arrow and arrow[0]["sha256"] == hashlib.sha256(Path(arrow[0]["path"]).read_bytes()).hexdigest()
    for inputs, extra, expect in (([tmp_path / "saved"], ["--text-field", "text"], "has no field 'text'; fields: body, n"),
                                  ([tmp_path / "dict"], ["--text-field", "body", "--dataset-split", "test"],
                                   "has no split 'test'; it has: train, web")):
        capsys.readouterr()
        code = prepare(inputs, "bad", tokenizer_dir, tmp_path / "bad", *extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expect in err[0], err


def test_skip_bad_lines_counts_and_skips(tmp_path, tokenizer_dir, capsys):
    lines = [json.dumps({"text": d}) for d in DOCS[:30]]
    lines[4] = "{not json"
    lines[9] = json.dumps({"body": "no text field"})
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert prepare([tmp_path / "docs.jsonl"], "d", tokenizer_dir, tmp_path / "a") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "docs.jsonl:5 is not valid JSON" in err[0] and "--skip-bad-lines" in err[0]
    assert not (tmp_path / "a").exists()
    assert prepare([tmp_path / "docs.jsonl"], "d", tokenizer_dir, tmp_path / "b", "--skip-bad-lines",
                   "--val-fraction", "0.2") == 0
    out = capsys.readouterr().out
    assert "2 bad line(s) skipped, first" in out and "docs.jsonl:5" in out and "docs.jsonl:10" in out
    domain = TokenStore(tmp_path / "b").domain("d")
    assert domain.info["skipped_lines"] == 2
    good = [d for i, d in enumerate(DOCS[:30]) if i not in (4, 9)]
    assert np.asarray(domain.tokens("train")).tolist() == expected_tokens(tokenizer_dir, good, 0.2)


def test_dedup_drops_repeated_documents(tmp_path, tokenizer_dir):
    texts = DOCS[:40] + [DOCS[3], "  " + DOCS[5].replace(" ", "\n", 2), DOCS[7] + " extra"] + DOCS[10:20]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    assert prepare([tmp_path / "docs.jsonl"], "d", tokenizer_dir, tmp_path / "store", "--dedup",
                   "--val-fraction", "0.2") == 0
    domain = TokenStore(tmp_path / "store").domain("d")
    seen, kept = set(), []
    for text in texts:  # by hand: whitespace runs as one space, NFC
        key = " ".join(text.split())
        if key not in seen:
            seen.add(key)
            kept.append(text)
    assert len(kept) == 41
    dropped = [t for i, t in enumerate(texts) if " ".join(t.split()) in {" ".join(k.split()) for k in texts[:i]}]
    assert domain.info["dedup"] == {"enabled": True, "documents_dropped": len(dropped),
                                    "bytes_dropped": sum(len(t.encode()) for t in dropped)}
    assert np.asarray(domain.tokens("train")).tolist() == expected_tokens(tokenizer_dir, kept, 0.2)
    assert dedup_key("a  b\n") == dedup_key("a b") != dedup_key("a b c")


@pytest.mark.parametrize("value", ["0", "-1MiB", "12 parsecs", "512", "nan"])
def test_bad_shard_size_is_refused(value, tmp_path, tokenizer_dir, corpus, capsys):
    """A size that is not one, or under 1 KiB: one line naming --shard-size, exit 2, nothing written."""
    capsys.readouterr()
    try:
        code = prepare([corpus["prose"]], "p", tokenizer_dir, tmp_path / "s", "--shard-size", value)
    except SystemExit as stop:  # argparse refuses a value of the wrong type
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--shard-size" in err[-1] and not any("Traceback" in line for line in err)
    assert not (tmp_path / "s").exists()


def _held_prepare(inputs, domain, tokenizer_dir, out, pauses):
    """`data prepare` in a subprocess, held after its first progress save (regrow.pause_points)."""
    pauses.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
           "REGROW_PAUSE_AT": "prepare-progress@1", "REGROW_PAUSE_DIR": str(pauses)}
    proc = subprocess.Popen([sys.executable, "-m", "regrow", "data", "prepare", *map(str, inputs), "--domain", domain,
                             "--tokenizer", str(tokenizer_dir), "--out", str(out), "--shard-size", "2KiB",
                             "--val-fraction", "0.1", "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not list(pauses.glob("prepare-progress@1.*")):
        time.sleep(0.02)
    (marker,) = pauses.glob("prepare-progress@1.*")
    return proc, marker


def test_two_preparations_into_one_folder_keep_both_domains(corpus, tokenizer_dir, tmp_path):
    """One run is held mid-way (it read the manifest at its start) while a second prepares another
    domain into the same folder; released, the first must not drop the second's domain from the
    manifest (it did: the manifest listed only the last run's domain)."""
    out = tmp_path / "data"
    proc, marker = _held_prepare([corpus["prose"]], "prose", tokenizer_dir, out, tmp_path / "pauses")
    assert prepare([corpus["code"]], "code", tokenizer_dir, out, "--val-fraction", "0.1") == 0
    marker.unlink()  # let the first go on
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    store = TokenStore(out)
    assert store.domain_names == ["code", "prose"]
    for name in ("code", "prose"):
        assert len(store.domain(name).tokens("train")) > 0


def test_a_second_preparation_of_the_same_domain_is_refused_while_one_runs(corpus, tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "data"
    proc, marker = _held_prepare([corpus["prose"]], "prose", tokenizer_dir, out, tmp_path / "pauses")
    capsys.readouterr()
    assert prepare([corpus["prose"]], "prose", tokenizer_dir, out, "--val-fraction", "0.1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another `regrow data prepare` is writing domain 'prose'" in err[0], err
    marker.unlink()
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert TokenStore(out).domain_names == ["prose"]
