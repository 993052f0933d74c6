"""Input arguments shared by the commands that read documents (`tokenizer train`, `data prepare`)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import sys
from collections.abc import Iterator

from regrow.data.sources import (
    AUTO_PARAGRAPH_BELOW,
    BUILTIN_DOMAINS,
    DOCUMENT_UNITS,
    ReadOptions,
    SourceRecord,
    effective_unit,
    expand_inputs,
    inputs_fingerprint,
    iter_builtin,
    iter_documents,
)
from regrow.errors import RegrowError


def add_input_arguments(parser, several_builtins: bool) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="text / JSONL / Parquet files or folders, glob patterns, @LIST files, builtin:NAME (a "
                             "shipped book or language: regrow corpora list); text and JSONL may be .gz, .bz2, "
                             ".xz or .zst")
    if several_builtins:
        parser.add_argument("--builtin", action="append", default=[], choices=BUILTIN_DOMAINS, help="add a builtin corpus")
    else:
        parser.add_argument("--builtin", choices=BUILTIN_DOMAINS, help="use a builtin corpus instead of INPUT")
    parser.add_argument("--text-field", default="text", help="JSONL field / Parquet column / dataset field with the text")
    parser.add_argument("--dataset-split", default="train", help="the split of a `datasets` folder with several")
    parser.add_argument("--skip-bad-lines", action="store_true",
                        help="count and skip JSONL lines that are not JSON or lack the field (default: an error)")
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
        streams.append(iter_documents(args.inputs, record, read_options(args)))
    return itertools.chain(*(itertools.islice(s, max_per_source) for s in streams))


def read_options(args) -> ReadOptions:
    return ReadOptions(args.text_field, args.documents, args.skip_bad_lines, args.dataset_split)


def inputs_key(args) -> str:
    """What the documents are made from: the input files (names, sizes, times), builtins, and how they are read."""
    builtins = args.builtin if isinstance(args.builtin, list) else [args.builtin] if args.builtin else []
    files = inputs_fingerprint(expand_inputs(args.inputs)) if args.inputs else ""
    payload = {"files": files, "builtins": builtins, "python": sys.version if builtins else "",
               "read": dataclasses.asdict(read_options(args))}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
