"""`regrow tokenizer train INPUT... --vocab-size N --out DIR`."""

from __future__ import annotations

import itertools

from regrow.data.sources import (
    BUILTIN_DOMAINS,
    DOCUMENT_UNITS,
    SourceRecord,
    iter_builtin,
    iter_documents,
)
from regrow.data.tokenizer import train_bpe
from regrow.errors import RegrowError


def register(subparsers) -> None:
    parser = subparsers.add_parser("tokenizer", help="train a byte-level BPE tokenizer")
    commands = parser.add_subparsers(dest="tokenizer_command", required=True, metavar="SUBCOMMAND")
    train = commands.add_parser("train", help="train a byte-level BPE and save an HF tokenizer folder")
    train.add_argument("inputs", nargs="*", metavar="INPUT", help="text / JSONL / Parquet files or folders")
    train.add_argument("--builtin", action="append", default=[], choices=BUILTIN_DOMAINS, help="add a builtin corpus")
    train.add_argument("--vocab-size", type=int, required=True)
    train.add_argument("--out", required=True, help="output folder (an HF tokenizer folder)")
    train.add_argument("--text-field", default="text", help="JSONL field / Parquet column with the text")
    train.add_argument("--documents", choices=DOCUMENT_UNITS, default="file", help="a text file is one document, or one per paragraph")
    train.add_argument("--min-frequency", type=int, default=2)
    train.add_argument("--max-documents", type=int, default=None, help="train on at most this many documents per input")
    train.set_defaults(func=run)


def run(args) -> int:
    if not args.inputs and not args.builtin:
        raise RegrowError("no input given; pass files or folders, or --builtin NAME")
    record = SourceRecord()
    streams = [iter_builtin(name, record) for name in args.builtin]
    if args.inputs:
        streams.append(iter_documents(args.inputs, record, args.text_field, args.documents))
    if args.max_documents is not None:
        streams = [itertools.islice(s, args.max_documents) for s in streams]
    out = train_bpe(itertools.chain(*streams), args.vocab_size, args.out, args.min_frequency)
    print(f"tokenizer saved to {out} ({args.vocab_size} tokens, {len(record.files)} files read)")
    return 0
