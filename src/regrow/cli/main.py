"""Entry point of the `regrow` command: parse, dispatch, turn user errors into exit code 2."""

from __future__ import annotations

import argparse
import sys

from regrow import __version__

# isort: off
from regrow.cli import (  # noqa: F401  (registration, in the order `regrow --help` lists them)
    corpora,
    tokenizer,
    data,
    train,
    prune,
    study,
    report,
    schedule,
    evaluate,
    sensitivity,
    probe,
    fit,
    registries,
    demo,
)
# isort: on
from regrow.cli.commands import COMMANDS
from regrow.errors import RegrowError


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported like every other one: one line, exit code 2."""

    def error(self, message: str):
        self.exit(2, f"regrow: error: {message} (see {self.prog} --help)\n")


def describe_os_error(err: OSError) -> str:
    """`path: reason` of an OS error (a full disk, a read-only folder, ...)."""
    where = " -> ".join(str(p) for p in (err.filename, err.filename2) if p)
    reason = err.strerror or str(err) or type(err).__name__
    return f"{where}: {reason}" if where else reason


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="regrow",
        description="Compress a large language model, continue pre-training it cheaply, measure what it buys.",
    )
    parser.add_argument("--version", action="version", version=f"regrow {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS.values():
        add_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RegrowError as err:
        print(f"regrow: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("regrow: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # the environment (disk full, read-only folder), not the input: exit 1
        print(f"regrow: error: {describe_os_error(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
