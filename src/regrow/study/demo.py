"""`regrow demo`: the main job in miniature, offline, from nothing but the package.

1. train a byte-level BPE on the standard library and build two real domains from it:
   `prose` (English docstrings) and `code` (Python without docstrings);
2. pre-train a small Llama on prose;
3. continue it on code three ways: no replay (cosine re-warm and re-decay), cosine re-warm with
   5% prose replay, and the infinite schedule with 5% replay;
4. print forgetting (rise of the prose loss) and adaptation (fall of the code loss) per run.

Every step is skipped when its output is already complete, so a second call is quick.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from regrow.config import from_dict
from regrow.data.prepare import prepare_domain
from regrow.data.sources import SourceRecord, iter_builtin
from regrow.data.store import MANIFEST
from regrow.data.tokenizer import load_tokenizer, train_bpe
from regrow.train.config import RunConfig
from regrow.train.trainer import train

VOCAB_SIZE = 2048
SEQ_LEN = 128
BASE_MODEL = {
    "model_type": "llama", "hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 352, "max_position_embeddings": SEQ_LEN,
    "tie_word_embeddings": True,
}
TRAIN = {"batch_size": 16, "eval_tokens": 16384, "log_every": 25, "keep_checkpoints": 1}
LR_MAX = 3e-3


@dataclass(frozen=True)
class DemoSize:
    """How much work the demo does; `QUICK` is for tests and smoke checks."""

    base_steps: int = 300
    continue_steps: int = 150
    max_documents: int | None = None  # per domain; None: the whole standard library


FULL = DemoSize()
QUICK = DemoSize(base_steps=30, continue_steps=12, max_documents=400)


@dataclass(frozen=True)
class Continuation:
    name: str
    schedule: dict
    replay: float


def continuations(steps: int) -> tuple[Continuation, ...]:
    """The three ways to continue; the infinite schedule's phases scale with the run length."""
    cosine = {"name": "cosine", "warmup_steps": 3}
    infinite = {
        "name": "infinite", "warmup_steps": 3, "cooldown_steps": steps // 3,
        "lr_const": LR_MAX * 0.55, "anneal_steps": steps // 5,
    }
    return (
        Continuation("no-replay", cosine, 0.0),
        Continuation("cosine-replay5", cosine, 0.05),
        Continuation("infinite-replay5", infinite, 0.05),
    )


def prepare_demo_data(out: Path, max_documents: int | None = None) -> tuple[Path, Path]:
    tokenizer_dir, data_dir = out / "tokenizer", out / "data"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        print("[demo] training a byte-level BPE tokenizer on the standard library")
        record = SourceRecord()
        docs = itertools.chain(
            itertools.islice(iter_builtin("stdlib-prose", record), 4000),
            itertools.islice(iter_builtin("stdlib-code", record), 300),
        )
        train_bpe(docs, VOCAB_SIZE, tokenizer_dir)
    tokenizer = load_tokenizer(tokenizer_dir)
    have = json.loads((data_dir / MANIFEST).read_text())["domains"] if (data_dir / MANIFEST).is_file() else {}
    for domain, builtin in (("prose", "stdlib-prose"), ("code", "stdlib-code")):
        if domain not in have:
            print(f"[demo] building domain {domain!r} from {builtin}")
            record = SourceRecord()
            docs = itertools.islice(iter_builtin(builtin, record), max_documents)
            prepare_domain(docs, record, tokenizer, str(tokenizer_dir), data_dir, domain, 0.02, progress=False)
    return tokenizer_dir, data_dir


def run_once(recipe: dict) -> dict:
    """Train one recipe unless its run already finished (then reuse its summary)."""
    out_dir = Path(recipe["out_dir"])
    summary_path = out_dir / "summary.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    shutil.rmtree(out_dir, ignore_errors=True)  # an unfinished earlier attempt
    return train(from_dict(RunConfig, recipe))


def run_demo(out: str | Path, size: DemoSize = FULL, progress: bool = True) -> list[dict]:
    out = Path(out)
    started = time.perf_counter()
    tokenizer_dir, data_dir = prepare_demo_data(out, size.max_documents)
    train_keys = {**TRAIN, "progress": progress}
    print(f"[demo] pre-training the base model on prose ({size.base_steps} steps)")
    run_once({
        "out_dir": str(out / "runs" / "base"), "seed": 0, "tokenizer": str(tokenizer_dir),
        "model": {"config": BASE_MODEL},
        "data": {"path": str(data_dir), "mixture": {"prose": 1.0}, "seq_len": SEQ_LEN},
        "train": {**train_keys, "steps": size.base_steps},
        "schedule": {"name": "cosine", "lr_max": LR_MAX, "lr_min": LR_MAX / 10, "warmup_steps": 10},
    })
    rows = []
    for cont in continuations(size.continue_steps):
        print(f"[demo] continuing on code: {cont.name} ({size.continue_steps} steps)")
        mixture = {"code": 1.0 - cont.replay, "prose": cont.replay} if cont.replay else {"code": 1.0}
        summary = run_once({
            "out_dir": str(out / "runs" / cont.name), "seed": 0,
            "model": {"init": str(out / "runs" / "base" / "model")},
            "data": {"path": str(data_dir), "mixture": mixture, "seq_len": SEQ_LEN, "new_domains": ["code"]},
            "train": {**train_keys, "steps": size.continue_steps},
            "schedule": {"lr_max": LR_MAX, "lr_min": LR_MAX / 10, **cont.schedule},
        })
        rows.append({"run": cont.name, "schedule": cont.schedule["name"], "replay": cont.replay, **_losses(summary)})
    table = format_table(rows)
    (out / "results.md").write_text(table + "\n")
    print()
    print(table)
    print(f"\n[demo] done in {time.perf_counter() - started:.0f} s; runs, metrics and models under {out}")
    return rows


def _losses(summary: dict) -> dict:
    d = summary["domains"]
    return {
        "prose_start": d["prose"]["loss_start"], "prose_end": d["prose"]["loss_end"], "forgetting": d["prose"]["forgetting"],
        "code_start": d["code"]["loss_start"], "code_end": d["code"]["loss_end"], "adaptation": d["code"]["adaptation"],
    }


def format_table(rows: list[dict]) -> str:
    lines = [
        "| run | schedule | replay | prose loss (old) | forgetting | code loss (new) | adaptation |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['schedule']} | {r['replay']:.0%} | {r['prose_start']:.3f} -> {r['prose_end']:.3f} | "
            f"{r['forgetting']:+.3f} | {r['code_start']:.3f} -> {r['code_end']:.3f} | {r['adaptation']:+.3f} |"
        )
    return "\n".join(lines)
