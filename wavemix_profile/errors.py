"""Which exceptions are the user's bad input (one line, exit 2) rather than our bugs; how a run ends early."""
from __future__ import annotations

from .models import UnknownModelError, UnsupportedImageSizeError


class BadInputError(ValueError):
    """Input the user can fix: the message names what was wrong and what is accepted."""


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, (BadInputError, UnknownModelError, UnsupportedImageSizeError))


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended a run; `stored` results of this run are safely in the store."""

    def __init__(self, stored: int):
        super().__init__(stored)
        self.stored = stored
