"""Damaged and crafted checkpoints: `--resume`, `train.load_optimizer` and a damaged run folder.

Every file regrow reads from a checkpoint is tried damaged and, where it is a pickle, with a
payload that would create a file: the command exits 2 naming the file, and the payload never ran.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil

import pytest
import torch
from badinput import CreatesFile, assert_refused, payload_bytes, write_yaml
from conftest import recipe

from regrow.cli.main import main
from regrow.train.metrics import read_metrics


@pytest.fixture(scope="module")
def run_with_checkpoint(tokenizer_dir, data_dir, tmp_path_factory):
    """A finished 4-step run whose checkpoint step 4 is complete; its recipe extends it to 6 steps."""
    root = tmp_path_factory.mktemp("ckpt")
    out = root / "run"
    base = recipe(tokenizer_dir, data_dir, out)
    base["train"].update(steps=4, checkpoint_every=2)
    base["schedule"]["total_steps"] = 6  # so that a resume may extend the run to 6 steps
    path = write_yaml(root / "r.yaml", base)
    assert main(["train", str(path)]) == 0
    return out, base


def _copy(run_with_checkpoint, tmp_path):
    out, base = run_with_checkpoint
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    data = json.loads(json.dumps(base))
    data["out_dir"] = str(copy)
    return copy, write_yaml(tmp_path / "r.yaml", data)


def _latest(run):
    return sorted((run / "checkpoints").glob("step_*"))[-1]


def _torch_payload(marker) -> bytes:
    buffer = io.BytesIO()
    torch.save(CreatesFile(marker), buffer)
    return buffer.getvalue()


DAMAGE = {
    # file in the latest checkpoint -> (new bytes (callable of the marker path), expected text)
    "metadata_payload": ("shards/.metadata", payload_bytes, "which DCP metadata never holds"),
    "metadata_garbage": ("shards/.metadata", lambda m: b"not a pickle at all", "is corrupt or not DCP metadata"),
    "metadata_empty": ("shards/.metadata", lambda m: b"", "is corrupt or not DCP metadata"),
    "metadata_other_object": ("shards/.metadata", lambda m: pickle.dumps({"a": 1}), "is not DCP metadata"),
    "metadata_missing": ("shards/.metadata", None, "has no sharded state"),
    "rng_payload": ("rng.pt", _torch_payload, "rng.pt' is corrupt or not regrow's RNG state"),
    "rng_plain_pickle_payload": ("rng.pt", payload_bytes, "is corrupt or not regrow's RNG state"),
    "rng_garbage": ("rng.pt", lambda m: b"\x00" * 10, "is corrupt or not regrow's RNG state"),
    "rng_missing": ("rng.pt", None, "lacks rng.pt"),
    "state_not_json": ("state.json", lambda m: b"{\"step\": 4,", "checkpoint state"),
    "state_missing_keys": ("state.json", lambda m: b'{"step": 4}', "is damaged: it lacks 'sampler'"),
    "state_duplicate_keys": ("state.json", lambda m: b'{"step": 4, "step": 6}', "duplicated key 'step'"),
    "state_binary": ("state.json", lambda m: b"\x00\x01", "is a binary file"),
    "config_binary": ("config.yaml", lambda m: b"\x00\xff\x00", "is a binary file"),
    "config_duplicate": ("config.yaml", lambda m: b"seed: 0\nseed: 1\n", "duplicated key 'seed'"),
    "config_not_yaml": ("config.yaml", lambda m: b"seed: [0\n", "checkpoint config"),
    "config_changed": ("config.yaml", lambda m: b"seed: 5\n", "--resume with a changed config"),
}


@pytest.mark.parametrize("case", list(DAMAGE), ids=list(DAMAGE))
def test_damaged_checkpoint_resume(case, run_with_checkpoint, tmp_path, capsys):
    name, content, expect = DAMAGE[case]
    run, path = _copy(run_with_checkpoint, tmp_path)
    target = _latest(run) / name
    marker = tmp_path / "payload-ran"
    if content is None:
        target.unlink()
    else:
        target.write_bytes(content(marker))
    assert_refused(capsys, ["train", path, "--resume", "--set", "train.steps=6"], expect, [tmp_path])
    assert not marker.exists(), "the payload ran"


def _edit_step(state):
    state["step"] = 3


def _edit_weight(state):
    weights = state["sampler"]["weights"]
    first = sorted(weights)[0]
    weights[first] = weights[first] + 0.1


def _negative_step(state):
    state["step"] = -5


def _drop_checksum(state):
    del state["checksum"]


@pytest.mark.parametrize("edit", [_edit_step, _edit_weight, _negative_step, _drop_checksum])
def test_edited_resume_state_is_refused(edit, run_with_checkpoint, tmp_path, capsys):
    """state.json carries a checksum over its contents: an edited step (more updates than the
    summary would report), an edited mixture weight, a negative step (an OverflowError before)
    are refused with one line."""
    run, path = _copy(run_with_checkpoint, tmp_path)
    target = _latest(run) / "state.json"
    state = json.loads(target.read_text())
    edit(state)
    target.write_text(json.dumps(state))
    assert_refused(capsys, ["train", path, "--resume", "--set", "train.steps=6"],
                   "was edited or damaged: its checksum does not match its contents", [tmp_path])


def test_a_state_copied_from_another_checkpoint_is_refused(run_with_checkpoint, tmp_path, capsys):
    """A state.json whose checksum holds but which belongs to another checkpoint (step 2 copied
    into step 4): its optimizer step disagrees with the shards' AdamW state."""
    run, path = _copy(run_with_checkpoint, tmp_path)
    steps = sorted((run / "checkpoints").glob("step_*"))
    (steps[-1] / "state.json").write_bytes((steps[0] / "state.json").read_bytes())
    assert_refused(capsys, ["train", path, "--resume", "--set", "train.steps=6"],
                   "state.json records 2 optimizer updates, its shards hold 4", [tmp_path])


def _shard_files(checkpoint):
    return sorted((checkpoint / "shards").glob("*.distcp"))


@pytest.mark.parametrize("case", ["truncated", "missing"])
def test_damaged_shards(case, run_with_checkpoint, tmp_path, capsys):
    run, path = _copy(run_with_checkpoint, tmp_path)
    shard = _shard_files(_latest(run))[0]
    if case == "missing":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:100])
    expect = "is missing shard files" if case == "missing" else "has truncated shard files"
    assert_refused(capsys, ["train", path, "--resume", "--set", "train.steps=6"], expect, [tmp_path])


def test_load_optimizer_from_crafted_checkpoint(run_with_checkpoint, tokenizer_dir, data_dir, tmp_path, capsys):
    """model.init at a checkpoint with train.load_optimizer: its metadata is read the same safe way."""
    run, _ = _copy(run_with_checkpoint, tmp_path)
    checkpoint = _latest(run)
    marker = tmp_path / "payload-ran"
    (checkpoint / "shards" / ".metadata").write_bytes(payload_bytes(marker))
    data = recipe(tokenizer_dir, data_dir, tmp_path / "next", model={"init": str(checkpoint)})
    data["tokenizer"] = None
    data["train"]["load_optimizer"] = True
    path = write_yaml(tmp_path / "next.yaml", data)
    assert_refused(capsys, ["train", path], "which DCP metadata never holds", [tmp_path])
    assert not marker.exists()


def test_checkpoint_entries_are_read_as_plain_data(tmp_path):
    """Non-tensor entries of the DCP shards (step counts, hyper-parameters) go through
    weights_only=True: a pickled object with a payload is refused and never runs."""
    from types import SimpleNamespace

    from regrow.errors import RegrowError
    from regrow.train.checkpoint import _SafePlanner

    marker = tmp_path / "payload-ran"
    planner = _SafePlanner()
    planner.flatten_state_dict = False
    planner.state_dict = {}
    item = SimpleNamespace(dest_index=SimpleNamespace(fqn="optim.param_groups.0.lr"))
    with pytest.raises(RegrowError, match="holds objects that are not plain data"):
        planner.load_bytes(item, io.BytesIO(_torch_payload(marker)))
    assert not marker.exists()
    plain = io.BytesIO()
    torch.save({"lr": 0.1, "betas": (0.9, 0.95)}, plain)
    plain.seek(0)
    planner.load_bytes(item, plain)
    assert planner.state_dict["optim.param_groups.0.lr"] == {"lr": 0.1, "betas": (0.9, 0.95)}


def test_partial_metrics_line_is_an_interrupted_write(run_with_checkpoint, tmp_path, capsys):
    """A kill can leave half a line at the end of metrics.jsonl: --resume drops it and goes on."""
    run, path = _copy(run_with_checkpoint, tmp_path)
    rows_before = read_metrics(run)
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"event": "train", "step": 5, "lo')
    assert main(["train", str(path), "--resume", "--set", "train.steps=6"]) == 0
    rows = read_metrics(run)
    assert [r["step"] for r in rows if r["event"] == "train"] == list(range(1, 7))
    assert rows[: len(rows_before)] == rows_before


def test_damaged_metrics_line_in_the_middle_is_named(run_with_checkpoint, tmp_path, capsys):
    run, path = _copy(run_with_checkpoint, tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = "garbage"
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert_refused(capsys, ["train", path, "--resume", "--set", "train.steps=6"], "is damaged at line 2", [tmp_path])


def test_a_corrupted_shard_of_the_same_size_is_named(run_with_checkpoint, tmp_path, capsys):
    """Bytes overwritten inside a shard file (its size unchanged, so the completeness check passes):
    torch's reader failed with a traceback; now one line names the file and says it is damaged."""
    run, path = _copy(run_with_checkpoint, tmp_path)
    shard = _shard_files(_latest(run))[0]
    data = bytearray(shard.read_bytes())
    data[: len(data) // 2] = b"\x00" * (len(data) // 2)
    shard.write_bytes(bytes(data))
    assert_refused(capsys, ["train", path, "--resume", "--set", "train.steps=6"],
                   f"checkpoint shard file {str(shard)!r} is damaged", [tmp_path])
