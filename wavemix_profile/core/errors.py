"""Which exceptions are the user's bad input (one line, exit 2) rather than our bugs; how a run ends early."""
from __future__ import annotations

from contextlib import contextmanager

from ..models import UnknownModelError, UnsupportedImageSizeError


class BadInputError(ValueError):
    """Input the user can fix: the message names what was wrong and what is accepted."""


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, (BadInputError, UnknownModelError, UnsupportedImageSizeError))


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended a run; `stored` results of this run are safely in the store."""

    def __init__(self, stored: int):
        super().__init__(stored)
        self.stored = stored


# A stop (Ctrl-C, SIGTERM) that arrived inside held_stops(), raised when the outermost block ends.
_held: dict = {"depth": 0, "stop": None}


@contextmanager
def held_stops():
    """Hold Ctrl-C and SIGTERM until the block ends, so that what it does together happens together
    (a record appended and counted as stored). Signal handlers run in the main thread: use it there."""
    _held["depth"] += 1
    try:
        yield
    finally:
        _held["depth"] -= 1
        if not _held["depth"] and _held["stop"] is not None:
            stop, _held["stop"] = _held["stop"], None
            raise stop


def stop_run(stop: KeyboardInterrupt) -> None:
    """What a Ctrl-C or SIGTERM handler does: raise `stop` here, or at the end of a held_stops() block."""
    if _held["depth"]:
        _held["stop"] = stop
        return
    raise stop


class WriteFailed(OSError):
    """A file of the run could not be written (a full disk, a read-only folder): one line, exit 1.
    Nothing already stored is lost; `stored` results of this run are in the store (None: not a run)."""

    stored: int | None = None

    def __str__(self) -> str:
        stored = "" if self.stored is None else \
            f"; {self.stored} result{'s' * (self.stored != 1)} of this run stored, rerun with --resume"
        return f"cannot write {self.filename}: {self.strerror}{stored}"


def write_failed(path, exc: OSError) -> WriteFailed:
    """The WriteFailed for an OSError met writing `path` (itself if it is one already)."""
    if isinstance(exc, WriteFailed):
        return exc
    return WriteFailed(exc.errno, exc.strerror or str(exc), str(path))
