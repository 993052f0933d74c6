"""Atomic file and folder writes: data goes to a temporary path, then one rename publishes it.

A crash or a kill at any moment leaves either the old complete output or the new complete
output, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from regrow.errors import find_cause


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def os_error_of(err: BaseException, path: str | os.PathLike) -> OSError | None:
    """The OS error behind a failed write, with the path it concerns: found in the exception's
    chain (and in DCP's per-rank failures), or ENOSPC when the disk under `path` is full (torch's
    writers report a full disk as RuntimeError). None: the failure is not the environment's."""
    found = find_cause(err, lambda e: isinstance(e, OSError) and e.errno is not None)
    if found is not None:
        if found.filename is None:
            return type(found)(found.errno, found.strerror or os.strerror(found.errno), str(path))
        return found
    try:
        if shutil.disk_usage(Path(path).parent if not Path(path).exists() else path).free < (1 << 20):
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    except OSError:
        pass
    return None


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; published files get the usual mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        os_error = None if isinstance(err, (KeyboardInterrupt, SystemExit)) else os_error_of(err, path)
        if os_error is not None and os_error is not err:
            raise os_error from err
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final` in one rename.

    On an exception the temporary folder is removed and `final` is left as it was. Only a
    folder is ever replaced (a file at `final` is an error), and only when `replace` is set:
    callers check first that `final` is their own earlier output (regrow.paths).
    """
    final = Path(final)
    if final.exists() and not final.is_dir():
        raise FileExistsError(errno.EEXIST, "a file is in the way of an output folder", str(final))
    if final.exists() and not replace:
        raise FileExistsError(errno.EEXIST, "the output folder exists", str(final))
    created = missing_ancestor(final.parent)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        publish_dir(tmp, final)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_empty(final.parent, created)
        os_error = None if isinstance(err, (KeyboardInterrupt, SystemExit)) else os_error_of(err, final)
        if os_error is not None and os_error is not err:
            raise os_error from err
        raise


def publish_dir(ready: Path, final: Path) -> None:
    """Put the complete folder `ready` at `final` (a folder already there is replaced) by renames:
    a reader sees the old folder or the new one."""
    if final.exists():
        old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old.tmp"))
        try:
            os.replace(final, old)  # renaming over an empty folder is atomic
        except OSError:
            old.rmdir()  # nothing moved: leave no temporary folder behind
            raise
        os.replace(ready, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(ready, final)


def missing_ancestor(folder: Path) -> Path | None:
    """The outermost of `folder` and its parents that does not exist yet (None: it exists)."""
    missing = None
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing = path
    return missing


def remove_empty(folder: Path, created: Path | None) -> None:
    """Undo the folders a failed write created: `folder` up to `created`, each if still empty."""
    if created is None:
        return
    for path in (folder, *folder.parents):
        try:
            path.rmdir()
        except OSError:
            return
        if path == created:
            return
