import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from regrow.cli.main import main
from regrow.data.prepare import is_validation
from regrow.data.sources import SourceRecord, iter_builtin
from regrow.data.store import TokenStore, token_dtype


def test_trained_tokenizer_loads_with_plain_autotokenizer(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert len(tok) == 512
    assert tok.eos_token == "<|endoftext|>"
    text = "def parse(value):\n    return value  # ünïcode"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text  # byte-level: lossless


def test_prepare_writes_manifest_and_memmaps(data_dir, tokenizer_dir):
    store = TokenStore(data_dir)
    assert store.domain_names == ["code", "prose"]
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    for name in store.domain_names:
        domain = store.domain(name)
        info = domain.info
        assert info["dtype"] == "uint16"
        train, val = np.asarray(domain.tokens("train")), np.asarray(domain.tokens("validation"))
        assert len(train) == info["splits"]["train"]["tokens"] > 0
        assert len(val) == info["splits"]["validation"]["tokens"] > 0
        # one EOS after every document
        assert int((train == tok.eos_token_id).sum()) == info["splits"]["train"]["documents"]
        assert train[-1] == tok.eos_token_id
        assert all(len(s["sha256"]) == 64 for s in info["sources"])


def test_split_is_by_document_hash(corpus, data_dir, tokenizer_dir):
    """Validation holds exactly the documents whose hash says so, each followed by EOS."""
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    docs = [p.read_text() for p in sorted(corpus["prose"].iterdir())]
    val_docs = [d for d in docs if is_validation(d, 0.1)]
    expected = list(itertools.chain.from_iterable(tok.encode(d, add_special_tokens=False) + [tok.eos_token_id] for d in val_docs))
    assert TokenStore(data_dir).domain("prose").tokens("validation")[:].tolist() == expected


def test_worker_count_does_not_change_tokens(corpus, tokenizer_dir, tmp_path):
    for workers in ("1", "2"):
        assert main(["data", "prepare", str(corpus["code"]), "--domain", "code", "--tokenizer", str(tokenizer_dir),
                     "--out", str(tmp_path / workers), "--workers", workers, "--no-progress", "--val-fraction", "0.2"]) == 0
    one = TokenStore(tmp_path / "1").domain("code")
    two = TokenStore(tmp_path / "2").domain("code")
    assert np.array_equal(one.tokens("train"), two.tokens("train"))


def test_jsonl_and_parquet_inputs(tmp_path, tokenizer_dir):
    docs = [f"Document number {i} talks about parsing, files and numbers." * 3 for i in range(40)]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"body": d, "id": i}) for i, d in enumerate(docs)))
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"body": docs}), parquet)
    for name, path in (("j", jsonl), ("p", parquet)):
        assert main(["data", "prepare", str(path), "--domain", name, "--text-field", "body", "--tokenizer",
                     str(tokenizer_dir), "--out", str(tmp_path / "store"), "--val-fraction", "0.2", "--no-progress"]) == 0
    store = TokenStore(tmp_path / "store")
    j, p = store.domain("j"), store.domain("p")
    assert j.info["splits"] == p.info["splits"]
    assert j.info["splits"]["train"]["documents"] + j.info["splits"]["validation"]["documents"] == 40
    assert np.array_equal(j.tokens("train"), p.tokens("train"))


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz", "zst"])
def test_compressed_inputs_prepare_as_the_plain_files(compression, tmp_path, tokenizer_dir):
    """A compressed JSONL file and a compressed book, named directly, by a glob and by an @LIST
    file, give the plain files' tokens; the record holds each file's size and sha256 on disk."""
    import bz2
    import gzip
    import hashlib
    import lzma

    import zstandard

    compress = {"gz": lambda b: gzip.compress(b, mtime=0), "bz2": bz2.compress, "xz": lzma.compress,
                "zst": lambda b: zstandard.ZstdCompressor().compress(b)}[compression]
    docs = [f"Document {i} is about parsing, files and numbers; " * (3 + i % 5) for i in range(60)]
    book = "\n\n".join(f"Paragraph {i} of a small book, with enough words to be a document." for i in range(50))
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    plain.mkdir(), packed.mkdir()
    (plain / "docs.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in docs) + "\n")
    (plain / "book.txt").write_text(book)
    for name in ("docs.jsonl", "book.txt"):
        (packed / f"{name}.{compression}").write_bytes(compress((plain / name).read_bytes()))
    (tmp_path / "inputs.list").write_text(f"# the packed inputs\n{packed / 'book.txt'}.{compression}\n\n"
                                          f"{packed / 'docs.jsonl'}.{compression}\n")
    ways = {"plain": [str(plain / "book.txt"), str(plain / "docs.jsonl")],
            "direct": [str(packed / f"book.txt.{compression}"), str(packed / f"docs.jsonl.{compression}")],
            "glob": [str(packed / f"*.{compression}")],  # sorted: book before docs, as listed above
            "list": ["@" + str(tmp_path / "inputs.list")]}
    for way, inputs in ways.items():
        assert main(["data", "prepare", *inputs, "--domain", way, "--tokenizer", str(tokenizer_dir),
                     "--out", str(tmp_path / "store"), "--val-fraction", "0.1", "--no-progress"]) == 0
    store = TokenStore(tmp_path / "store")
    reference = store.domain("plain")
    for way in ("direct", "glob", "list"):
        domain = store.domain(way)
        for split in ("train", "validation"):
            assert np.array_equal(domain.tokens(split), reference.tokens(split)), (way, split)
        for source in domain.info["sources"]:
            data = Path(source["path"]).read_bytes()
            assert source["bytes"] == len(data) and source["sha256"] == hashlib.sha256(data).hexdigest()


def test_prepare_replaces_one_domain_and_keeps_others(corpus, tokenizer_dir, tmp_path):
    out = tmp_path / "store"
    for domain, src in (("a", "prose"), ("b", "code"), ("a", "code")):
        assert main(["data", "prepare", str(corpus[src]), "--domain", domain, "--tokenizer", str(tokenizer_dir),
                     "--out", str(out), "--no-progress", "--val-fraction", "0.2"]) == 0
    store = TokenStore(out)
    assert store.domain_names == ["a", "b"]
    assert np.array_equal(store.domain("a").tokens("train"), store.domain("b").tokens("train"))


def test_paragraph_documents(tmp_path, tokenizer_dir):
    book = tmp_path / "book.txt"
    book.write_text("\n\n".join(f"Paragraph {i} of a long book." for i in range(50)))
    assert main(["data", "prepare", str(book), "--domain", "book", "--documents", "paragraph", "--tokenizer",
                 str(tokenizer_dir), "--out", str(tmp_path / "s"), "--val-fraction", "0.2", "--no-progress"]) == 0
    splits = TokenStore(tmp_path / "s").domain("book").info["splits"]
    assert splits["train"]["documents"] + splits["validation"]["documents"] == 50


def test_token_dtype_widens_for_large_vocabularies():
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


def test_builtin_domains_are_prose_and_code():
    record = SourceRecord()
    prose = list(itertools.islice(iter_builtin("stdlib-prose", record), 20))
    code = list(itertools.islice(iter_builtin("stdlib-code", SourceRecord()), 5))
    assert len(prose) == 20 and all(len(p) >= 40 for p in prose)
    assert not any(p.lstrip().startswith(("def ", "import ", "class ")) for p in prose)
    assert any("def " in c or "import " in c for c in code)
    # docstrings are removed from the code domain
    assert not any(p in c for p in prose[:5] for c in code)
    assert record.files and all(len(f["sha256"]) == 64 for f in record.files)


@pytest.mark.parametrize("val", ["0.0", "0.3"])
def test_validation_fraction_is_respected(corpus, tokenizer_dir, tmp_path, val):
    assert main(["data", "prepare", str(corpus["prose"]), "--domain", "p", "--tokenizer", str(tokenizer_dir),
                 "--out", str(tmp_path / "s"), "--val-fraction", val, "--no-progress"]) == 0
    splits = TokenStore(tmp_path / "s").domain("p").info["splits"]
    n = splits["train"]["documents"] + splits["validation"]["documents"]
    p = float(val)
    if p == 0:
        assert splits["validation"]["documents"] == 0
    else:  # each document is drawn into validation with probability p: within 3 binomial sd
        assert abs(splits["validation"]["documents"] / n - p) <= 3 * (p * (1 - p) / n) ** 0.5, (splits, n)
