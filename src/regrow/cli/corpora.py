"""`regrow corpora list` and `regrow corpora extract NAME DIR`: the books shipped with regrow."""

from __future__ import annotations

from regrow.cli.commands import COMMANDS
from regrow.data import corpora


@COMMANDS.register("corpora")
def register(subparsers) -> None:
    parser = subparsers.add_parser("corpora", help="the built-in public-domain books (builtin:NAME inputs)")
    commands = parser.add_subparsers(dest="corpora_command", required=True, metavar="SUBCOMMAND")
    listing = commands.add_parser("list", help="one corpus a line: name, language, size, source")
    listing.set_defaults(func=run_list)
    extract = commands.add_parser("extract", help="write a corpus's texts into a new or empty folder")
    extract.add_argument("name", metavar="NAME", help="a book or a language (en, de)")
    extract.add_argument("out", metavar="DIR", help="a new or empty folder")
    extract.set_defaults(func=run_extract)


def run_list(args) -> int:
    for language, title in corpora.LANGUAGES.items():
        books = corpora.books_of(language)
        size = sum(b.text_bytes for b in books)
        print(f"{language}\t{language}\t{size / 1e6:.2f} MB\tall {title} books: "
              + ", ".join(b.name for b in books))
    for book in sorted(corpora.BOOKS.values(), key=lambda b: (b.language, b.name)):
        print(f"{book.name}\t{book.language}\t{book.text_bytes / 1e6:.2f} MB\t{book.source}")
    return 0


def run_extract(args) -> int:
    written = corpora.extract(args.name, args.out)
    size = sum(p.stat().st_size for p in written)
    print(f"{len(written)} text(s), {size / 1e6:.2f} MB, extracted to {args.out}")
    return 0
