"""The files a run writes are regular files, opened where they are: never through a symbolic link.

A store, its lock file and each report live in --out. A symbolic link there could point at any file
of the machine, which an append, a torn-tail repair or a lock would then change; a FIFO would hang
the open and a directory cannot take a record. So each is refused, as the user's bad input (one line,
exit 2), unless it is a regular file, and opened with O_NOFOLLOW (O_NONBLOCK too, so that a FIFO put
there between the check and the open cannot hang it).
"""
from __future__ import annotations

import errno
import os
import stat

from ..core.errors import BadInputError

_REFUSED = (errno.ELOOP, errno.EISDIR, errno.ENXIO)  # a link (O_NOFOLLOW), a folder, a FIFO or socket


def _kind(mode: int) -> str:
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a folder" if stat.S_ISDIR(mode) else
            "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device")


def refusal(path: str | os.PathLike, what: str, mode: int) -> BadInputError:
    return BadInputError(f"{what} {str(path)!r} is {_kind(mode)}, not a regular file; wavemix-profile writes only "
                         "regular files in place: remove it or give another --out")


def check_regular(path: str | os.PathLike, what: str) -> None:
    """BadInputError unless `path` is absent or a regular file (a symbolic link is refused)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise refusal(path, what, mode)


def open_regular(path: str | os.PathLike, flags: int, what: str, mode: int = 0o666) -> int:
    """os.open(path, flags) that refuses (BadInputError) a symbolic link or anything but a regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno not in _REFUSED:
            raise
        try:
            found = os.lstat(path).st_mode
        except OSError:
            raise exc from None
        if stat.S_ISREG(found):  # a loop further up the path: not this file's doing
            raise
        raise refusal(path, what, found) from None
    found = os.fstat(fd).st_mode
    if not stat.S_ISREG(found):
        os.close(fd)
        raise refusal(path, what, found)
    os.set_blocking(fd, True)
    return fd
