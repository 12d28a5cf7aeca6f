"""Which exceptions are the user's bad input (one line, exit 2) rather than our bugs."""
from __future__ import annotations

from .models import UnknownModelError, UnsupportedImageSizeError


class BadInputError(ValueError):
    """Input the user can fix: the message names what was wrong and what is accepted."""


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, (BadInputError, UnknownModelError, UnsupportedImageSizeError))
