"""Output paths: regrow writes only where nothing is, or over what the same command wrote.

Every command checks its output paths before any work. An existing path is refused, with one
line naming it, unless the command recognises it as its own earlier output (a data folder
for `data prepare`, a study folder for `study`, a JSON record of the same command, ...); a
file where a folder is expected, and the reverse, is named as such.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from regrow.errors import RegrowError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_SOFTWARE = "regrow"  # the Software text chunk of every figure regrow writes


def _check_writable(path: Path) -> None:
    """A folder or file that cannot be written is the environment's problem (exit 1), named with the OS reason."""
    if not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0)):
        raise PermissionError(errno.EACCES, "not writable (permissions or a read-only file system)", str(path))


def _check_parent(path: Path, flag: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RegrowError(f"{flag} {str(path)!r}: {str(parent)!r} is a file, not a folder")
            _check_writable(parent)
            return


def check_output_dir(path: str | os.PathLike, flag: str, own: Callable[[Path], bool] | None = None,
                     what: str = "output") -> Path:
    """A folder regrow may write: absent, empty, or (with `own`) the same command's earlier output.
    Never the current folder or one above it: an output folder is published by renaming a
    finished one into its place, which cannot be done to the folder a shell stands in."""
    path = Path(path)
    resolved, here = path.resolve(), Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise RegrowError(f"{flag} {str(path)!r} is the current folder{' or above it' if resolved != here else ''}; "
                          "regrow writes its output as a new folder: name one inside it (e.g. "
                          f"{flag} {Path(str(path), 'out')})")
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise RegrowError(f"{flag} {str(path)!r} is a file; a folder is expected here")
        if any(path.iterdir()) and not (own is not None and own(path)):
            what = f"is not {what}" if own is not None else "is not empty"
            raise RegrowError(f"{flag} {str(path)!r} already exists and {what}; regrow does not write into "
                              "folders it did not make: choose a new path or remove it yourself")
        _check_writable(path)
        return path
    _check_parent(path, flag)
    return path


def check_output_file(path: str | os.PathLike, flag: str, own: Callable[[Path], bool]) -> Path:
    """A file regrow may write: absent, or the same command's earlier output (`own`)."""
    path = Path(path)
    if path.is_dir():
        raise RegrowError(f"{flag} {str(path)!r} is a folder; a file is expected here")
    if path.exists():
        if not own(path):
            raise RegrowError(f"{flag} {str(path)!r} already exists and was not written by this command; regrow "
                              "does not overwrite it: choose another path or remove it yourself")
        _check_writable(path)
    _check_parent(path, flag)
    return path


def is_regrow_png(path: Path) -> bool:
    """A PNG written by regrow (its Software text chunk says so)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return False
    return head.startswith(PNG_SIGNATURE) and b"tEXtSoftware\x00" + PNG_SOFTWARE.encode() in head


def is_json_record(*keys: str) -> Callable[[Path], bool]:
    """`own` for a JSON output: an object holding `keys` (what this command writes)."""

    def own(path: Path) -> bool:
        from regrow.reading import parse_json

        try:
            data = parse_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and all(k in data for k in keys)

    return own


def only_entries(*names: str, required: tuple[str, ...] = ()) -> Callable[[Path], bool]:
    """`own` for a folder: it holds nothing but `names` (hidden temporary leftovers of regrow aside)
    and every `required` entry."""

    def own(path: Path) -> bool:
        entries = {p.name for p in path.iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))}
        return entries <= set(names) and all(r in entries for r in required)

    return own
