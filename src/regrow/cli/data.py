"""`regrow data prepare INPUT... --domain NAME --tokenizer DIR --out DATA_DIR`."""

from __future__ import annotations

import sys

from regrow.cli.argtypes import byte_size, finite_float
from regrow.cli.commands import COMMANDS
from regrow.cli.inputs import (
    add_input_arguments,
    document_unit_note,
    documents_from_args,
    inputs_key,
)
from regrow.data.engines import ENGINES
from regrow.data.prepare import DEFAULT_SHARD_BYTES, PrepareOptions, prepare_domain
from regrow.data.sources import SourceRecord
from regrow.data.tokenizer import load_tokenizer
from regrow.errors import RegrowError


@COMMANDS.register("data")
def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="prepare token stores")
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    prep = commands.add_parser("prepare", help="tokenize inputs into one domain of a data folder (resumable)")
    add_input_arguments(prep, several_builtins=False)
    prep.add_argument("--domain", help="domain name (default: the builtin's name)")
    prep.add_argument("--tokenizer", required=True, help="an HF tokenizer folder")
    prep.add_argument("--out", required=True, help="the data folder (created or extended)")
    prep.add_argument("--val-fraction", type=finite_float, default=0.01, help="fraction of documents held out for validation")
    prep.add_argument("--workers", type=int, default=None, help="tokenizer processes (default: all cores)")
    prep.add_argument("--shard-size", type=byte_size, default=DEFAULT_SHARD_BYTES,
                      help="largest token shard file (default 1GiB; units B, KB, MB, GB, KiB, MiB, GiB)")
    prep.add_argument("--engine", choices=["auto", *ENGINES], default="auto",
                      help="tokenizer engine: auto uses a faster one (tiktoken) only when it reproduces the HF "
                           "tokenizer's ids on a sample of the input, else hf")
    prep.add_argument("--dedup", action="store_true",
                      help="drop documents whose normalised text was already seen in this domain (exact dedup)")
    prep.add_argument("--trust-remote-code", action="store_true")
    prep.add_argument("--no-progress", action="store_true")
    prep.set_defaults(func=run)


def run(args) -> int:
    if args.workers is not None and args.workers < 1:
        raise RegrowError(f"--workers is {args.workers}; it must be >= 1")
    if args.builtin and args.inputs:
        raise RegrowError("give either INPUT files or --builtin, not both")
    domain = args.domain or args.builtin
    if not domain and args.inputs:
        raise RegrowError("--domain NAME is required with INPUT files")
    record = SourceRecord()
    documents = documents_from_args(args, record)
    tokenizer = load_tokenizer(args.tokenizer, args.trust_remote_code)
    options = PrepareOptions(val_fraction=args.val_fraction, workers=args.workers, shard_bytes=args.shard_size,
                             engine=args.engine, dedup=args.dedup, inputs_key=inputs_key(args),
                             progress=not args.no_progress)
    info = prepare_domain(documents, record, tokenizer, args.tokenizer, args.out, domain, options)
    splits = info["splits"]
    notes = [f"engine {info['engine']['name']}", f"{sum(len(s) for s in info['shards'].values())} shard(s)"]
    if info["resumed_at_document"]:
        notes.append(f"resumed after document {info['resumed_at_document']:,}")
    if args.dedup:
        notes.append(f"{info['dedup']['documents_dropped']:,} duplicate(s) dropped")
    if record.skipped_lines:
        notes.append(f"{record.skipped_lines:,} bad line(s) skipped, first {', '.join(record.first_skipped)}")
    print(
        f"domain {domain!r} in {args.out}: train {splits['train']['tokens']:,} tokens / {splits['train']['documents']:,} docs, "
        f"validation {splits['validation']['tokens']:,} tokens / {splits['validation']['documents']:,} docs "
        f"({info['bytes'] / max(info['seconds'], 1e-9) / 1e6:.1f} MB/s; {'; '.join(notes)}){document_unit_note(args)}"
    )
    if info["engine"]["name"] == "hf" and args.engine == "auto":
        print(f"note: tokenized with hf ({info['engine']['reason']})", file=sys.stderr)
    return 0
