"""`regrow tokenizer train INPUT... --vocab-size N --out DIR`."""

from __future__ import annotations

from regrow.cli.commands import COMMANDS
from regrow.cli.inputs import add_input_arguments, document_unit_note, documents_from_args
from regrow.data.sources import SourceRecord
from regrow.data.tokenizer import is_tokenizer_dir, train_bpe
from regrow.errors import RegrowError
from regrow.paths import check_output_dir


@COMMANDS.register("tokenizer")
def register(subparsers) -> None:
    parser = subparsers.add_parser("tokenizer", help="train a byte-level BPE tokenizer")
    commands = parser.add_subparsers(dest="tokenizer_command", required=True, metavar="SUBCOMMAND")
    train = commands.add_parser("train", help="train a byte-level BPE and save an HF tokenizer folder")
    add_input_arguments(train, several_builtins=True)
    train.add_argument("--vocab-size", type=int, required=True)
    train.add_argument("--out", required=True, help="output folder (an HF tokenizer folder)")
    train.add_argument("--min-frequency", type=int, default=2)
    train.add_argument("--max-documents", type=int, default=None, help="train on at most this many documents per input")
    train.set_defaults(func=run)


def run(args) -> int:
    for flag, value in (("--vocab-size", args.vocab_size), ("--min-frequency", args.min_frequency),
                        ("--max-documents", args.max_documents)):
        if value is not None and value < 1:
            raise RegrowError(f"{flag} is {value}; it must be >= 1")
    check_output_dir(args.out, "--out", own=is_tokenizer_dir, what="a tokenizer folder")
    record = SourceRecord()
    documents = documents_from_args(args, record, args.max_documents)
    out = train_bpe(documents, args.vocab_size, args.out, args.min_frequency, record.describe)
    print(f"tokenizer saved to {out} ({args.vocab_size} tokens, {len(record.files)} files read){document_unit_note(args)}")
    return 0
