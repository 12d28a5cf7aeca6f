"""POSIX record locks (``fcntl.lockf``) on single bytes of a lock file, for processes sharing a store.

Record locks rather than ``flock`` because they work on NFS too. Their semantics shape this module:

* They belong to the process, not to a file descriptor: closing *any* descriptor of the lock file
  drops every lock the process holds on it. So each lock file is opened once per process, the
  descriptor is shared by every user of that file here (:func:`lock_file`), and it is never closed.
* Locks of one process never conflict with each other: a second lock on a byte this process already
  holds succeeds at once (and may convert a shared lock to exclusive or back), and one unlock drops
  it for every thread. Threads of one process therefore also take :attr:`LockFile.mutex`.
* The kernel drops a process's locks when it exits, however it exits (SIGKILL included): a lock can
  never be left stale.

The lock file itself holds no data and is never deleted (deleting a lock file races with a process
that has just opened it). It is opened where it is, never through a symbolic link, and must be a
regular file (:mod:`.regular_files`): a lock would otherwise create or lock a file anywhere.
"""
from __future__ import annotations

import errno
import fcntl
import os
import threading
from contextlib import contextmanager
from typing import Iterator

from .regular_files import open_regular

_HELD_ELSEWHERE = (errno.EACCES, errno.EAGAIN)  # what a non-blocking lockf says when another process holds it
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


class LockFile:
    """Byte-range locks on one lock file; get it with :func:`lock_file`, not directly."""

    def __init__(self, path: str):
        self.path = path
        self.mutex = threading.Lock()  # record locks do not exclude threads of one process
        self._opening = threading.Lock()
        self._fd: int | None = None
        self._writable = False
        self._retired: list[int] = []  # superseded descriptors, kept open: closing one drops our locks

    def _descriptor(self, *, write: bool) -> int | None:
        """The shared descriptor, opened on first use; None if the file cannot be opened for reading.

        Reopened (the old one kept open) if the lock file was replaced since, or if a lock needing
        write access comes after a read-only open.
        """
        with self._opening:
            if self._fd is not None and (self._writable or not write) and self._still_there():
                return self._fd
            try:
                fd, writable = open_regular(self.path, os.O_RDWR | os.O_CREAT, "lock file"), True
            except OSError as exc:
                if write or exc.errno not in _READ_ONLY:
                    raise
                try:  # a store we may read but not write: a shared lock needs only read access
                    fd, writable = open_regular(self.path, os.O_RDONLY, "lock file"), False
                except OSError:
                    return None
            if self._fd is not None:
                self._retired.append(self._fd)
            self._fd, self._writable = fd, writable
            return fd

    def _still_there(self) -> bool:
        try:
            here, ours = os.lstat(self.path), os.fstat(self._fd)
        except FileNotFoundError:
            return False
        return (here.st_dev, here.st_ino) == (ours.st_dev, ours.st_ino)

    @contextmanager
    def hold(self, offset: int, *, exclusive: bool) -> Iterator[None]:
        """Hold byte `offset` shared or exclusive (blocking), also against this process's other threads.

        A shared hold on a file this process cannot open is taken on the mutex alone.
        """
        with self.mutex:
            fd = self._descriptor(write=exclusive)
            if fd is None:
                yield
                return
            fcntl.lockf(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, 1, offset)
            try:
                yield
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)

    def try_lock(self, offset: int) -> bool:
        """Take byte `offset` exclusive without waiting: False if another process holds it."""
        try:
            fcntl.lockf(self._descriptor(write=True), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError as exc:
            if exc.errno in _HELD_ELSEWHERE:
                return False
            raise
        return True

    def lock(self, offset: int) -> None:
        """Take byte `offset` exclusive, waiting for another process to let go.

        Raises OSError(EDEADLK) if the kernel sees that waiting would deadlock.
        """
        fcntl.lockf(self._descriptor(write=True), fcntl.LOCK_EX, 1, offset)

    def unlock(self, offset: int) -> None:
        """Let go of byte `offset`; nothing happens if this process does not hold it."""
        with self._opening:
            fd = self._fd
        if fd is not None:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)


_FILES: dict[str, LockFile] = {}
_FILES_LOCK = threading.Lock()


def lock_file(path: str | os.PathLike) -> LockFile:
    """The one LockFile of `path` in this process (the file is created on first lock). Its folder is
    resolved, the file itself never followed: a lock file that is a symbolic link is refused."""
    folder, name = os.path.split(os.path.abspath(path))
    key = os.path.join(os.path.realpath(folder), name)
    with _FILES_LOCK:
        if key not in _FILES:
            _FILES[key] = LockFile(key)
        return _FILES[key]
