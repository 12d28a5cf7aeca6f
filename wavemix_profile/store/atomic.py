"""Replace a file all at once: readers see the old file or the new one, never half of either.

Every generated file (CSV, Markdown, charts) is written under a unique hidden name in the same
folder and then renamed over the final name with ``os.replace``, which is atomic within one file
system. Unique names let two processes write the same report at once: the last rename wins, and
neither trips over the other's temporary file. Whatever goes wrong while writing (a full disk, a
renderer raising), the temporary file is removed and the previous file is left untouched; a failed
write is raised as errors.WriteFailed (one line). A final name that is a symbolic link or not a
regular file is refused before anything is written (regular_files.py).

A writer holds an exclusive flock on its temporary file while it lives, so a temporary file nobody
holds was left by a writer that was killed (SIGKILL cannot be cleaned up after): sweep_stale
removes those, and only those (`--resume` does).
"""
from __future__ import annotations

import fcntl
import os
import re
import secrets
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from ..core.errors import write_failed
from .regular_files import check_regular

_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")  # what _create_unique names


def _create_unique(path: Path) -> tuple[Path, int]:
    """Create an empty ``.NAME.XXXXXXXXXXXX.tmp`` beside `path`, held (flock), and return its path and
    the descriptor that holds it.

    Not tempfile.mkstemp: that creates the file 0600, and the rename would then make every report
    readable by its owner only. Opening with 0666 lets the umask decide, as a plain open() would.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _same_file(tmp, fd):
            return tmp, fd
        os.close(fd)  # swept between its creation and our lock: take another name
    raise FileExistsError(f"no free temporary name beside {path}")


def _same_file(path: Path, fd: int) -> bool:
    try:
        here, ours = os.lstat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (ours.st_dev, ours.st_ino)


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path to write in full; on a clean exit it replaces `path`.

    The temporary file is in the same folder (so the rename stays on one file system) and is
    fsynced before the rename, so after a power cut `path` holds the old content or the new, not
    an empty file. On any exception it is deleted and `path` is left as it was; an OSError is
    raised as WriteFailed naming `path`.
    """
    path = Path(path)
    check_regular(path, "output file")
    try:
        tmp, held = _create_unique(path)
    except OSError as exc:
        raise write_failed(path, exc) from None
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_failed(path, exc) from None
        raise
    finally:
        os.close(held)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text`, UTF-8, atomically (see :func:`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sweep_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files in `folder` that writers killed mid-write left (no live writer holds
    them); return their paths. Files of live writers, and anything not named as ours, stay."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        if not _TEMPORARY.match(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_file(Path(entry.path), fd):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # held: its writer is alive
            pass
        finally:
            os.close(fd)
    return removed
