"""Bad input to the commands that read documents and models and write folders:
`tokenizer train`, `data prepare` and `prune` (flags, damaged files, outputs that exist)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from badinput import assert_refused, write_yaml

from regrow.cli.main import main

NAN = float("nan")


def _input_files(tmp_path):
    good = tmp_path / "book.txt"
    good.write_text("A first paragraph of the book.\n\nA second one, somewhat longer than the first.\n")
    return good


# ---- tokenizer train -------------------------------------------------------------------------

def _make_file(path):
    path.write_text("my notes, not a tokenizer")


def _make_foreign_folder(path):
    path.mkdir()
    (path / "thesis.tex").write_text("\\documentclass{article}")


def _make_tokenizer_plus(path):
    path.mkdir()
    (path / "tokenizer.json").write_text("{}")
    (path / "weights.safetensors").write_bytes(b"\x00" * 16)


TOKENIZER_CASES = {
    "out_is_file": (_make_file, [], "is a file; a folder is expected here"),
    "out_foreign_folder": (_make_foreign_folder, [], "already exists and is not a tokenizer folder"),
    "out_tokenizer_and_more": (_make_tokenizer_plus, [], "already exists and is not a tokenizer folder"),
    "vocab_too_small": (None, ["--vocab-size", "10"], "--vocab-size 10 is too small; a byte-level BPE needs at least 257"),
    "vocab_zero": (None, ["--vocab-size", "0"], "--vocab-size is 0; it must be >= 1"),
    "vocab_text": (None, ["--vocab-size", "many"], "argument --vocab-size: invalid int value: 'many'"),
    "min_frequency_zero": (None, ["--min-frequency", "0"], "--min-frequency is 0"),
    "max_documents_zero": (None, ["--max-documents", "0"], "--max-documents is 0"),
    "unknown_builtin": (None, ["--builtin", "wikipedia"], "argument --builtin: invalid choice: 'wikipedia'"),
    "unknown_documents_unit": (None, ["--documents", "sentence"], "argument --documents: invalid choice"),
}


@pytest.mark.parametrize("case", list(TOKENIZER_CASES), ids=list(TOKENIZER_CASES))
def test_tokenizer_train(case, tmp_path, capsys):
    make, extra, expect = TOKENIZER_CASES[case]
    book = _input_files(tmp_path)
    out = tmp_path / "tok"
    if make is not None:
        make(out)
    argv = ["tokenizer", "train", book, "--out", out, *(extra or ["--vocab-size", "300"])]
    if extra and "--vocab-size" not in extra:
        argv += ["--vocab-size", "300"]
    assert_refused(capsys, argv, expect, [tmp_path])


def _write(name, content: bytes):
    def make(tmp_path):
        path = tmp_path / name
        path.write_bytes(content)
        return [path]
    return make


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, mtime=0)


def _empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    return [tmp_path / "empty"]


INPUT_CASES = {
    "missing": (lambda p: [p / "absent.txt"], "does not exist"),
    "not_utf8": (_write("book.txt", "caf\xe9 au lait\n\nmore".encode("latin-1")), "is not UTF-8 text"),
    "empty_folder": (_empty_folder, "holds no supported files"),
    "jsonl_bad_line": (_write("docs.jsonl", b'{"text": "a"}\n{broken\n'), "docs.jsonl:2 is not valid JSON"),
    "jsonl_no_field": (_write("docs.jsonl", b'{"body": "a"}\n'), "has no field 'text' (set --text-field)"),
    "jsonl_not_utf8": (_write("docs.jsonl", b'{"text": "\xe9"}\n'), "is not UTF-8"),
    "parquet_corrupt": (_write("docs.parquet", b"PAR1 not really parquet"), "is not a readable Parquet file"),
    "all_empty": (_write("blank.txt", b"\n\n   \n"), "hold no text"),
    # compressed inputs: a damaged stream is named with where it broke; a bad line inside one by its line
    "gzip_truncated": (_write("docs.jsonl.gz", _gzip(b'{"text": "a long enough line"}\n' * 400)[:60]),
                       "docs.jsonl.gz' is a corrupt or truncated gzip file (near byte 60 of 60)"),
    "xz_garbage": (_write("book.txt.xz", b"\xfd7zXZ\x00 but not really xz data at all"),
                   "book.txt.xz' is a corrupt or truncated xz file (near byte"),
    "zstd_garbage": (_write("docs.jsonl.zst", b"\x28\xb5\x2f\xfd not a zstd frame"),
                     "docs.jsonl.zst' is a corrupt or truncated zstd file (near byte"),
    "gzip_bad_line": (_write("docs.jsonl.gz", _gzip(b'{"text": "a"}\n{"text": "b"}\nnot json\n')),
                      "docs.jsonl.gz:3 is not valid JSON"),
    "glob_no_match": (lambda p: [str(p / "nothing-*.jsonl.gz")], "matches no file"),
    "list_missing": (lambda p: ["@" + str(p / "absent.list")], "does not exist"),
}


@pytest.mark.parametrize("case", list(INPUT_CASES), ids=list(INPUT_CASES))
def test_tokenizer_inputs(case, tmp_path, capsys):
    make, expect = INPUT_CASES[case]
    inputs = make(tmp_path)
    assert_refused(capsys, ["tokenizer", "train", *inputs, "--vocab-size", "300", "--out", tmp_path / "tok"],
                   expect, [tmp_path])


@pytest.mark.parametrize("case", [c for c in INPUT_CASES if c != "all_empty"])
def test_prepare_inputs(case, tmp_path, tokenizer_dir, capsys):
    make, expect = INPUT_CASES[case]
    inputs = make(tmp_path)
    assert_refused(capsys, ["data", "prepare", *inputs, "--domain", "d", "--tokenizer", tokenizer_dir,
                            "--out", tmp_path / "data", "--no-progress"], expect, [tmp_path, tokenizer_dir])


def _zstd_frames(data: bytes, frame: int = 4096) -> bytes:
    """zstd as streaming writers make it: one frame per chunk of input."""
    import zstandard

    compressor = zstandard.ZstdCompressor()
    return b"".join(compressor.compress(data[i:i + frame]) for i in range(0, len(data), frame))


@pytest.mark.parametrize("name, compress", [("docs.jsonl.zst", _zstd_frames), ("docs.jsonl.gz", _gzip),
                                            ("book.txt.zst", _zstd_frames)])
def test_a_truncated_stream_is_an_error_even_when_skipping_bad_lines(name, compress, tmp_path, tokenizer_dir, capsys):
    """--skip-bad-lines skips bad lines, not bad files: a compressed input cut short (here after two
    thirds, between frames' ends) is refused, never read as a shorter corpus with exit 0."""
    line = b'{"text": "document number %d of the corpus"}\n' if ".jsonl" in name else b"Paragraph number %d of a book.\n\n"
    docs = b"".join(line % i for i in range(2000))
    whole = compress(docs)
    path = tmp_path / name
    path.write_bytes(whole[: len(whole) * 2 // 3])
    expect = f"{name}' is a corrupt or truncated"
    assert_refused(capsys, ["data", "prepare", path, "--domain", "d", "--tokenizer", tokenizer_dir, "--out",
                            tmp_path / "data", "--no-progress", "--skip-bad-lines"], expect, [tmp_path, tokenizer_dir])
    assert_refused(capsys, ["tokenizer", "train", path, "--vocab-size", "300", "--out", tmp_path / "tok",
                            "--skip-bad-lines"], expect, [tmp_path])
    path.write_bytes(whole)  # the whole file reads
    assert main(["data", "prepare", str(path), "--domain", "d", "--tokenizer", str(tokenizer_dir), "--out",
                 str(tmp_path / "data"), "--no-progress", "--val-fraction", "0.1"]) == 0


# ---- data prepare ----------------------------------------------------------------------------

def _copy_data(data_dir, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)
    return copy


def _manifest_text(text: str):
    def damage(folder):
        (folder / "manifest.json").write_text(text)
    return damage


def _manifest_edit(edit):
    def damage(folder):
        manifest = json.loads((folder / "manifest.json").read_text())
        edit(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return damage


PREPARE_CASES = {
    "val_fraction_nan": ([], None, ["--val-fraction", "nan"], "argument --val-fraction: 'nan' is not a finite number"),
    "val_fraction_one": ([], None, ["--val-fraction", "1"], "--val-fraction 1.0 is out of range; allowed: 0 <= f < 1"),
    "val_fraction_negative": ([], None, ["--val-fraction", "-0.1"], "--val-fraction -0.1 is out of range"),
    "val_fraction_word": ([], None, ["--val-fraction", "some"], "'some' is not a number"),
    "workers_zero": ([], None, ["--workers", "0"], "--workers is 0; it must be >= 1"),
    "workers_negative": ([], None, ["--workers", "-2"], "--workers is -2; it must be >= 1"),
    "domain_slash": ([], None, ["--domain", "../escape"], "domain name '../escape' is not allowed"),
    "domain_hidden": ([], None, ["--domain", ".hidden"], "domain name '.hidden' is not allowed"),
    "no_domain": ([], None, ["--domain", ""], "--domain NAME is required"),
    "builtin_and_inputs": ([], None, ["--builtin", "stdlib-prose"], "give either INPUT files or --builtin, not both"),
    "tokenizer_missing": ([], None, ["--tokenizer", "/nonexistent/tok"], "tokenizer '/nonexistent/tok' is not a folder"),
    "out_is_file": ([], "file", [], "is a file; a folder is expected here"),
    "out_foreign": ([], "foreign", [], "already exists and is not a regrow data folder"),
    "domain_folder_foreign": ([], "domain_foreign", [], "exists and is not a domain of"),
    "manifest_not_json": ([], _manifest_text("{oops"), [], "manifest"),
    "manifest_duplicate_key": ([], _manifest_text('{"version": 1, "domains": {}, "domains": {}}'), [], "duplicated key 'domains'"),
    "manifest_no_domains": ([], _manifest_text('{"version": 1}'), [], "is damaged: it lacks 'domains'"),
    "manifest_bad_domain": ([], _manifest_edit(lambda m: m["domains"]["prose"].pop("splits")), [], "domain 'prose' lacks a valid dtype"),
    "manifest_binary": ([], _manifest_text("\x00\x01\x02"), [], "is a binary file"),
    "other_tokenizer": ([], _manifest_edit(lambda m: m["domains"]["prose"]["tokenizer"].update(fingerprint="0" * 16)), [],
                        "was tokenized with another tokenizer"),
}


@pytest.mark.parametrize("case", list(PREPARE_CASES), ids=list(PREPARE_CASES))
def test_data_prepare(case, tmp_path, tokenizer_dir, data_dir, capsys):
    _, setup, extra, expect = PREPARE_CASES[case]
    book = _input_files(tmp_path)
    out = tmp_path / "data"
    if setup == "file":
        out.write_text("notes")
    elif setup == "foreign":
        out.mkdir()
        (out / "photo.jpg").write_bytes(b"\xff\xd8")
    elif setup == "domain_foreign":
        out = _copy_data(data_dir, tmp_path)
        (out / "mine").mkdir()
        (out / "mine" / "keep.txt").write_text("mine")
    elif setup is not None:
        out = _copy_data(data_dir, tmp_path)
        setup(out)
    argv = ["data", "prepare", book, "--domain", "mine", "--tokenizer", tokenizer_dir, "--out", out, "--no-progress"]
    for i in range(0, len(extra), 2):
        flag, value = extra[i], extra[i + 1]
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert_refused(capsys, argv, expect, [tmp_path, tokenizer_dir, data_dir])


def test_prepare_tokenizer_folder_without_files(tmp_path, capsys):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "config.json").write_text("{}")
    assert_refused(capsys, ["data", "prepare", _input_files(tmp_path), "--domain", "d", "--tokenizer", tmp_path / "tok",
                            "--out", tmp_path / "data"], "holds no tokenizer files", [tmp_path])


# ---- prune -----------------------------------------------------------------------------------

def _prune_argv(model, out, *extra):
    return ["prune", "--model", model, "--target-ratio", "0.5", "--method", "magnitude", "--out", out, *extra]


PRUNE_FLAG_CASES = {
    "ratio_nan": (["--target-ratio", "nan"], "argument --target-ratio: 'nan' is not a finite number"),
    "ratio_inf": (["--target-ratio", "inf"], "'inf' is not a finite number"),
    "ratio_zero": (["--target-ratio", "0"], "--target-ratio is 0.0; allowed: 0 < R <= 1"),
    "ratio_above_one": (["--target-ratio", "1.5"], "--target-ratio is 1.5"),
    "ratio_negative": (["--target-ratio", "-0.5"], "--target-ratio is -0.5"),
    "method_unknown": (["--method", "optimal-brain-surgeon"], "unknown method 'optimal-brain-surgeon'"),
    "reinit_unknown": (["--reinit", "lottery"], "unknown reinit 'lottery'"),
    "streaming_sheared": (["--method", "sheared", "--streaming"], "--streaming cannot run method 'sheared'"),
    "streaming_reinit": (["--streaming", "--reinit", "fire"], "--reinit 'fire' needs the model in memory"),
    "seq_len_zero": (["--seq-len", "0"], "seq_len is 0; it must be >= 1"),
    "batch_size_zero": (["--batch-size", "0"], "batch_size is 0"),
    "calibration_zero": (["--calibration-samples", "0"], "calibration_samples is 0"),
    "activation_memory_nan": (["--activation-memory-gb", "nan"], "'nan' is not a finite number"),
    "activation_memory_negative": (["--streaming", "--activation-memory-gb", "-1"], "activation_memory_gb is -1.0"),
    "depth_mode": (["--depth-mode", "random"], "depth_mode 'random' is not supported"),
    "precision": (["--precision", "int4"], "precision 'int4' is not supported"),
    "device": (["--device", "tpu"], "device 'tpu' is not supported"),
    "mixture_bad": (["--mixture", "prose"], "--mixture item 'prose' is not NAME=WEIGHT"),
    "set_nan": (["--set", "sheared.temperature=.nan"], "'sheared.temperature' is nan"),
    "set_zero_temperature": (["--set", "sheared.temperature=0"], "sheared.temperature is 0.0; it must be > 0"),
    "set_unknown": (["--set", "sheared.temp=1"], "unknown --set key 'sheared.temp'"),
    "steps_zero": (["--method", "sheared", "--steps", "0"], "sheared.steps is 0"),
    "seed_text": (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
    "no_model": (["--model", ""], "--model is required"),
    "both_targets": (["--target", "t.yaml"], "give exactly one of --target SPEC and --target-ratio R"),
}


def merge_flags(base: list, extra: list) -> list:
    """`base` flags with `extra` ones added or replacing theirs (a flag with no value is a switch)."""
    def pairs(items):
        out, i = {}, 0
        while i < len(items):
            flag = str(items[i])
            takes_value = i + 1 < len(items) and not str(items[i + 1]).startswith("--")
            out[flag] = items[i + 1] if takes_value else None
            i += 2 if takes_value else 1
        return out

    merged = {**pairs(base[1:]), **pairs(extra)}
    return [base[0]] + [x for flag, value in merged.items() for x in ([flag] if value is None else [flag, value])]


@pytest.mark.parametrize("case", list(PRUNE_FLAG_CASES), ids=list(PRUNE_FLAG_CASES))
def test_prune_flags(case, family_models, tmp_path, capsys):
    extra, expect = PRUNE_FLAG_CASES[case]
    argv = merge_flags(_prune_argv(family_models["llama"], tmp_path / "out"), extra)
    assert_refused(capsys, argv, expect, [tmp_path, family_models["llama"]])


TARGET_FILES = {
    "duplicate_yaml": ("t.yaml", b"hidden_size: 32\nhidden_size: 48\n", "duplicated key 'hidden_size'"),
    "duplicate_json": ("t.json", b'{"hidden_size": 32, "hidden_size": 48}', "duplicated key 'hidden_size'"),
    "binary": ("t.yaml", b"\x00\x00\x01\x02", "is a binary file"),
    "not_utf8": ("t.yaml", "hidden_size: 32 # \xe9".encode("latin-1"), "is not UTF-8 text"),
    "invalid_json": ("t.json", b"{hidden_size: 3", "is not valid JSON"),
    "list": ("t.yaml", b"- 1\n", "must hold a mapping, got list"),
    "empty": ("t.yaml", b"", "must be a mapping with any of"),
    "nan_size": ("t.yaml", b"hidden_size: .nan\n", "hidden_size is nan; it must be a whole number"),
    "zero_size": ("t.yaml", b"num_hidden_layers: 0\n", "target num_hidden_layers is 0; it must be >= 1"),
}


@pytest.mark.parametrize("case", list(TARGET_FILES), ids=list(TARGET_FILES))
def test_prune_target_files(case, family_models, tmp_path, capsys):
    name, content, expect = TARGET_FILES[case]
    target = tmp_path / name
    target.write_bytes(content)
    argv = ["prune", "--model", family_models["llama"], "--target", target, "--method", "magnitude", "--out", tmp_path / "out"]
    assert_refused(capsys, argv, expect, [tmp_path, family_models["llama"]])


def test_prune_missing_target_file(family_models, tmp_path, capsys):
    argv = ["prune", "--model", family_models["llama"], "--target", tmp_path / "absent.yaml", "--method", "magnitude",
            "--out", tmp_path / "out"]
    assert_refused(capsys, argv, "is not a file", [tmp_path])


CONFIG_FILES = {
    "duplicate": (b"method: depth\nmethod: magnitude\n", "duplicated key 'method'"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00", "is a binary file"),
    "unknown_key": (b"methd: depth\n", "unknown config key 'methd'"),
    "nan": (b"target_ratio: .nan\n", "'target_ratio' is nan"),
}


@pytest.mark.parametrize("case", list(CONFIG_FILES), ids=list(CONFIG_FILES))
def test_prune_config_files(case, family_models, tmp_path, capsys):
    content, expect = CONFIG_FILES[case]
    (tmp_path / "c.yaml").write_bytes(content)
    argv = ["prune", "--model", family_models["llama"], "--out", tmp_path / "out", "--config", tmp_path / "c.yaml"]
    if case != "nan":
        argv += ["--target-ratio", "0.5"]
    assert_refused(capsys, argv, expect, [tmp_path])


def _damaged_model(family_models, tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(family_models["llama"], folder)
    damage(folder)
    return folder


def _truncate(folder, keep=0.5):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _sharded(folder, remove: bool):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    model.save_pretrained(folder, max_shard_size="100KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    if remove:
        shards[1].unlink()
    else:
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        index["weight_map"] = {k: "../outside.safetensors" for k in index["weight_map"]}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def _config(**changes):
    def damage(folder):
        config = json.loads((folder / "config.json").read_text())
        config.update(changes)
        (folder / "config.json").write_text(json.dumps(config))
    return damage


MODEL_CASES = {
    "truncated": (_truncate, False, "corrupt or truncated model.safetensors"),
    "truncated_streaming": (_truncate, True, "corrupt or truncated model.safetensors"),
    "garbage_header": (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 7), False, "corrupt or truncated"),
    "missing_shard": (lambda f: _sharded(f, remove=True), False, "is missing shard files"),
    "missing_shard_streaming": (lambda f: _sharded(f, remove=True), True, "is missing shard files"),
    "index_escapes_folder": (lambda f: _sharded(f, remove=False), False, "is not a valid safetensors index"),
    "config_mismatch": (_config(intermediate_size=200), False, "does not match its weights"),
    "config_not_json": (lambda f: (f / "config.json").write_text("{oops"), False, "could not be loaded"),
    "no_weights": (lambda f: (f / "model.safetensors").unlink(), False, "needs config.json and *.safetensors"),
    "model_is_file": (None, False, "is not a folder"),
}


@pytest.mark.parametrize("case", list(MODEL_CASES), ids=list(MODEL_CASES))
def test_prune_damaged_models(case, family_models, tmp_path, capsys):
    damage, streaming, expect = MODEL_CASES[case]
    if damage is None:
        model = tmp_path / "model.bin"
        model.write_bytes(b"weights?")
    else:
        model = _damaged_model(family_models, tmp_path, damage)
    argv = _prune_argv(model, tmp_path / "out", *(["--streaming"] if streaming else []))
    assert_refused(capsys, argv, expect, [tmp_path])


def _drop_tensor(folder):
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    del weights["model.layers.1.mlp.down_proj.weight"]
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _extra_tensor(folder):
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    weights["model.layers.1.mlp.adapter.weight"] = torch.zeros(4, 4)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _mixtral_under_llama(family_models):
    def damage(folder):
        shutil.rmtree(folder)
        shutil.copytree(family_models["mixtral"], folder)
        config = json.loads((folder / "config.json").read_text())
        config.update(model_type="llama", architectures=["LlamaForCausalLM"])
        (folder / "config.json").write_text(json.dumps(config))
    return damage


@pytest.mark.parametrize("command", ["prune", "prune-streaming", "eval", "train", "train-sharded"])
@pytest.mark.parametrize("case, expect", [("dropped", "model.layers.1.mlp.down_proj.weight"),
                                          ("extra", "model.layers.1.mlp.adapter.weight"),
                                          ("mixtral_as_llama", "mlp.")])
def test_missing_or_unknown_tensors_are_named_on_every_load_path(command, case, expect, family_models, data_dir,
                                                                 tokenizer_dir, tmp_path, capsys):
    """A weight the config needs but the folder lacks used to be initialised at random (evaluated,
    pruned and trained with exit 0); Mixtral weights under a Llama config made every MLP random."""
    damage = {"dropped": _drop_tensor, "extra": _extra_tensor, "mixtral_as_llama": _mixtral_under_llama(family_models)}
    model = _damaged_model(family_models, tmp_path, damage[case])
    out = tmp_path / "out"
    if command.startswith("prune"):
        argv = _prune_argv(model, out, *(["--streaming"] if command == "prune-streaming" else []))
    elif command == "eval":
        argv = ["eval", "--model", model, "--data", data_dir, "--seq-len", "32"]
    elif command == "train":
        from conftest import recipe

        argv = ["train", write_yaml(tmp_path / "r.yaml", recipe(tokenizer_dir, data_dir, out, model={"init": str(model)}))]
    else:  # the meta-device loader every torchrun process uses for model.init and a teacher
        from regrow.errors import RegrowError
        from regrow.models.sharded import empty_from_folder

        with pytest.raises(RegrowError, match=re.escape(expect)) as refused:
            empty_from_folder(model)
        assert str(model) in str(refused.value)
        return
    line = assert_refused(capsys, argv, expect, [tmp_path, data_dir])
    assert str(model) in line


PRUNE_OUT_CASES = {
    "file": (lambda p: p.write_text("notes"), "is a file; a folder is expected here"),
    "nonempty_folder": (lambda p: (p.mkdir(), (p / "x.txt").write_text("x")), "already exists and is not empty"),
    "under_a_file": (None, "is a file, not a folder"),
}


@pytest.mark.parametrize("case", list(PRUNE_OUT_CASES), ids=list(PRUNE_OUT_CASES))
def test_prune_out(case, family_models, tmp_path, capsys):
    make, expect = PRUNE_OUT_CASES[case]
    out = tmp_path / "out"
    if make is None:
        out.write_text("a file")
        out = out / "inner"
    else:
        make(out)
    assert_refused(capsys, _prune_argv(family_models["llama"], out), expect, [tmp_path])


def test_yaml_payload_never_runs(family_models, tmp_path, capsys):
    """A YAML tag that would build a Python object is refused by the safe loader."""
    marker = tmp_path / "ran"
    write_yaml(tmp_path / "dummy.yaml", {})
    (tmp_path / "c.yaml").write_text(f"method: !!python/object/apply:builtins.open ['{marker}', 'w']\n")
    assert_refused(capsys, ["prune", "--model", family_models["llama"], "--target-ratio", "0.5", "--out",
                            tmp_path / "out", "--config", tmp_path / "c.yaml"], "is not valid YAML", [tmp_path])
    assert not marker.exists()


def _empty_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    return [path]


def _int_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": [1, 2, 3], "body": ["a", "b", "c"]}), path)
    return [path]


@pytest.mark.parametrize("command", ["tokenizer", "prepare"])
@pytest.mark.parametrize("make, expect", [
    (_write("empty.txt", b""), "hold no text (every document was empty): {dir}/empty.txt (0 bytes)"),
    (_write("empty.jsonl", b"\n\n"), "empty.jsonl (2 bytes)"),
    (_empty_parquet, "empty.parquet ("),
    (_int_parquet, "column 'text' holds int64, not text; set --text-field to a text column (body)"),
], ids=["text", "jsonl", "parquet", "parquet_int_column"])
def test_empty_inputs_and_wrong_columns_are_named(command, make, expect, tmp_path, tokenizer_dir, capsys):
    inputs = make(tmp_path)
    expect = expect.replace("{dir}", str(tmp_path)).replace("every document was empty", "")
    if command == "tokenizer":
        argv = ["tokenizer", "train", *inputs, "--vocab-size", "300", "--out", tmp_path / "tok"]
    else:
        argv = ["data", "prepare", *inputs, "--domain", "d", "--tokenizer", tokenizer_dir, "--out", tmp_path / "data",
                "--no-progress"]
    line = assert_refused(capsys, argv, expect.split(": ")[-1] if "hold no text" in expect else expect, [tmp_path])
    assert str(inputs[0]) in line


def test_the_current_folder_is_no_output_folder(tmp_path, monkeypatch, capsys):
    """`--out .` in an empty folder failed with "Device or resource busy" and left a temporary folder."""
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    assert_refused(capsys, ["tokenizer", "train", "builtin:goethe_faust1", "--vocab-size", "300", "--out", "."],
                   "--out '.' is the current folder", [tmp_path])
    assert_refused(capsys, ["tokenizer", "train", "builtin:goethe_faust1", "--vocab-size", "300", "--out", ".."],
                   "is the current folder or above it", [tmp_path])
    assert list(here.iterdir()) == []


def test_a_full_disk_during_prepare_names_the_folder(corpus, tokenizer_dir, tmp_path, monkeypatch, capsys):
    import errno
    import os

    import regrow.data.prepare as prepare_module

    def full(self, arrays):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(prepare_module.ShardWriter, "write", full)
    line = assert_refused(capsys, ["data", "prepare", corpus["prose"], "--domain", "prose", "--tokenizer", tokenizer_dir,
                                   "--out", tmp_path / "data", "--no-progress"], "No space left on device",
                          [tmp_path / "elsewhere"], code=1)
    assert str(tmp_path / "data" / ".prose.partial") in line
