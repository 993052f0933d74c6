"""Built-in corpora: public-domain English and German books shipped inside the package, xz-compressed.

They give every command a real corpus offline: the en -> de example, the quality tests and the
data benchmarks read them as `builtin:NAME` wherever an input file or folder is accepted. A book's
name reads one book; a language's name (`en`, `de`) reads all its books in name order, as a
folder of them would be read. `SOURCES.md` beside this file names each text's origin, edition and
licence. Archives are checked against the checksums below before they are read, so a damaged
installation is reported (with the file to blame) instead of yielding fewer documents.
"""

from __future__ import annotations

import hashlib
import lzma
import os
from dataclasses import dataclass
from pathlib import Path

from regrow.atomic import atomic_dir
from regrow.errors import RegrowError
from regrow.paths import check_output_dir

PREFIX = "builtin:"
ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Book:
    """One shipped text: its archive (relative to this folder), language, source, and checksums of
    the archive and of the text inside it."""

    name: str
    language: str
    archive: str
    text_bytes: int
    source: str
    archive_sha256: str
    text_sha256: str

    @property
    def path(self) -> Path:
        return ROOT / self.archive

    @property
    def text_name(self) -> str:
        """The file name of the text once extracted (the archive's name without `.xz`)."""
        return Path(self.archive).name.removesuffix(".xz")


BOOKS = {book.name: book for book in (
    Book("goethe_faust1", "de", "de/goethe_faust1_pg2229.txt.xz", 502_042,
         "Goethe, Faust. Der Tragödie erster Teil (Project Gutenberg #2229)",
         "be8bf88c70cdc2abc7d852415e4e36a283382c74ac3549d7f716ac7079cd0468",
         "b53b130fba53abca768d189b961b617e62f380dc84e39219e6f339ccb3f9cf8f"),
    Book("grimm_maerchen_1", "de", "de/grimm_kinder_und_hausmaerchen_1.txt.xz", 1_440_096,
         "Brüder Grimm, Kinder- und Hausmärchen (the High German tales and children's legends)",
         "d70fb1cced7d3ad564150a119392b30c665a6c2f7ef9a680d1d95ee8ef9e2dce",
         "e5f7472fab6e2ebe220d95d08321e8f4f39ba22515a6825eabfcbe3e642f4144"),
    Book("grimm_maerchen_2", "de", "de/grimm_kinder_und_hausmaerchen_2.txt.xz", 109_391,
         "Brüder Grimm, Kinder- und Hausmärchen (the 16 dialect tales, mostly Low German)",
         "6cea7cae02622ca8ad2acd77b91384ba095a118e4e7e2d2967007cf90cc39217",
         "99449e97063bbab22bafa2a30c07ae55070974ae0bf6ca94d6f71caf85243d82"),
    Book("verne_20000_meilen", "de", "de/verne_20000_meilen_unter_den_meeren.txt.xz", 796_071,
         "Jules Verne, Zwanzigtausend Meilen unter'm Meer (19th-century German translation)",
         "18b00dccf07ec233417436a3c30d487022b909cde5f6c5ad399f1d92ac13a432",
         "b26fec97b96b52e721315d6294778ccbed59ae64bf50684b9976755b4969b0d0"),
    Book("verne_kapitaen_grant", "de", "de/verne_die_kinder_des_kapitaens_grant.txt.xz", 1_396_840,
         "Jules Verne, Die Kinder des Kapitän Grant (19th-century German translation)",
         "572108a23a61ade8892b2d9ecb5ba11708446fbbe52cd7fb3ed88476aaa5f2f2",
         "2e0cd85aef252521563b8aa7da63314d49d3c89496a85cda43ec48e8ab1df3ed"),
    Book("tinyshakespeare", "en", "en/tinyshakespeare.txt.xz", 1_115_394,
         "Shakespeare, selected plays (Karpathy's tiny-shakespeare)",
         "21b40ccf4999c004256d116655824719001352dbc22636354d9cd0c645d03a4a",
         "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    Book("twain_huckleberry_finn", "en", "en/twain_huckleberry_finn.txt.xz", 565_405,
         "Mark Twain, The Adventures of Huckleberry Finn (electronic edition, 1993)",
         "3c7963726775e42d1b43d91bbbcb2378dcd1b625c94457a27fc413a9ef4e6db2",
         "d58c3f741422fc3153603f43a94edc461861f9a0199320cf9896253056899467"),
    Book("twain_tom_sawyer", "en", "en/twain_tom_sawyer.txt.xz", 389_289,
         "Mark Twain, The Adventures of Tom Sawyer (electronic edition, 1993)",
         "67c492f9a7f62c57f9876e7c60bac64a4e6a397359ef47cffc3ca46fbfbcf90a",
         "af86187348c457859a749c044fe244ec1e38c07c3943411f7eea038a9e4f4cee"),
)}
LANGUAGES = {"en": "English", "de": "German"}


def books_of(name: str) -> list[Book]:
    """The books a corpus name stands for: one book, or every book of a language (archive order,
    the order a folder of the texts would be read in)."""
    if name in BOOKS:
        return [BOOKS[name]]
    if name in LANGUAGES:
        return sorted((b for b in BOOKS.values() if b.language == name), key=lambda b: b.archive)
    known = ", ".join([*LANGUAGES, *BOOKS])
    raise RegrowError(f"unknown built-in corpus {name!r}; known: {known} (regrow corpora list)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _damaged(book: Book, why: str) -> RegrowError:
    return RegrowError(f"built-in corpus archive {book.path} is damaged ({why}); reinstall regrow "
                       "(pip install --force-reinstall regrow, or a fresh clone)")


def archives(name: str) -> list[Path]:
    """The checked archive files of a corpus name (what `builtin:NAME` reads, decompressed as it goes)."""
    paths = []
    for book in books_of(name):
        if not book.path.is_file():
            raise _damaged(book, "missing")
        if _sha256(book.path) != book.archive_sha256:
            raise _damaged(book, "its checksum differs from the one it shipped with")
        paths.append(book.path)
    return paths


def resolve(item: str) -> list[Path] | None:
    """The archives `builtin:NAME` names, or None when `item` is no built-in reference."""
    if not item.startswith(PREFIX):
        return None
    return archives(item[len(PREFIX):])


def extract(name: str, out_dir: str | os.PathLike) -> list[Path]:
    """Write the corpus's texts into `out_dir`, which must be new or empty (nothing is overwritten).
    The texts are decompressed into a temporary folder beside it, checked, then published by one
    rename: an error leaves nothing behind."""
    out = check_output_dir(out_dir, "corpora extract")
    books = books_of(name)
    archives(name)
    with atomic_dir(out) as tmp:
        for book in books:
            digest = hashlib.sha256()
            try:
                with open(tmp / book.text_name, "wb") as handle, lzma.open(book.path, "rb") as source:
                    for block in iter(lambda: source.read(1 << 20), b""):
                        digest.update(block)
                        handle.write(block)
            except (lzma.LZMAError, EOFError) as err:
                raise _damaged(book, f"cannot be decompressed: {err}") from None
            if digest.hexdigest() != book.text_sha256:
                raise _damaged(book, "the text inside differs from the one it shipped with")
    return [out / book.text_name for book in books]
