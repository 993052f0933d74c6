"""Input arguments shared by the commands that read documents (`tokenizer train`, `data prepare`)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from regrow.data.sources import (
    AUTO_PARAGRAPH_BELOW,
    BUILTIN_DOMAINS,
    DOCUMENT_UNITS,
    SourceRecord,
    effective_unit,
    expand_inputs,
    iter_builtin,
    iter_documents,
)
from regrow.errors import RegrowError


def add_input_arguments(parser, several_builtins: bool) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="text / JSONL / Parquet files or folders, glob patterns, @LIST files; text and JSONL "
                             "may be .gz, .bz2, .xz or .zst")
    if several_builtins:
        parser.add_argument("--builtin", action="append", default=[], choices=BUILTIN_DOMAINS, help="add a builtin corpus")
    else:
        parser.add_argument("--builtin", choices=BUILTIN_DOMAINS, help="use a builtin corpus instead of INPUT")
    parser.add_argument("--text-field", default="text", help="JSONL field / Parquet column with the text")
    parser.add_argument("--documents", choices=DOCUMENT_UNITS, default="auto",
                        help="a text file is one document (file), one per blank-line paragraph (paragraph), or "
                             f"auto: paragraphs when fewer than {AUTO_PARAGRAPH_BELOW} text files are given, else files")


def document_unit_note(args) -> str:
    """What `--documents auto` decided, said once in the command's result line ('' otherwise)."""
    if not args.inputs or args.documents != "auto":
        return ""
    paths = expand_inputs(args.inputs)
    if effective_unit(paths, "auto") != "paragraph":
        return ""
    return (f"; {len(paths)} input file(s): each blank-line paragraph of a text file is one document "
            "(--documents file keeps every file whole)")


def documents_from_args(args, record: SourceRecord, max_per_source: int | None = None) -> Iterator[str]:
    """The documents of INPUT... and --builtin, in order; inputs are checked before any work."""
    builtins = args.builtin if isinstance(args.builtin, list) else [args.builtin] if args.builtin else []
    if not args.inputs and not builtins:
        raise RegrowError("no input given; pass files or folders, or --builtin NAME")
    streams = [iter_builtin(name, record) for name in builtins]
    if args.inputs:
        streams.append(iter_documents(args.inputs, record, args.text_field, args.documents))
    return itertools.chain(*(itertools.islice(s, max_per_source) for s in streams))
