"""Replace a file all at once: readers see the old file or the new one, never half of either.

Every generated file (CSV, Markdown, charts) is written under a unique hidden name in the same
folder and then renamed over the final name with ``os.replace``, which is atomic within one file
system. Unique names let two processes write the same report at once: the last rename wins, and
neither trips over the other's temporary file. Whatever goes wrong while writing (a full disk, a
renderer raising), the temporary file is removed and the previous file is left untouched.
"""
from __future__ import annotations

import os
import secrets
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator


def _create_unique(path: Path) -> Path:
    """Create an empty ``.NAME.XXXXXXXXXXXX.tmp`` beside `path` and return its path.

    Not tempfile.mkstemp: that creates the file 0600, and the rename would then make every report
    readable by its owner only. Opening with 0666 lets the umask decide, as a plain open() would.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path to write in full; on a clean exit it replaces `path`.

    The temporary file is in the same folder (so the rename stays on one file system) and is
    fsynced before the rename, so after a power cut `path` holds the old content or the new, not
    an empty file. On any exception it is deleted and `path` is left as it was.
    """
    path = Path(path)
    tmp = _create_unique(path)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text`, UTF-8, atomically (see :func:`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
