"""The result store: JSON Lines, one record per line, appended, flushed and fsynced one at a time.

A run killed at any moment loses at most the measurement in flight. A last line without its
newline is torn (an append cut short) only if it does not parse as a record: it is skipped on
read with a warning and cut off before the next append, so it never glues itself to a good
record, but only in a file shown to be a store (a record before it): other bytes are never cut.
A complete record that merely lacks its newline is kept, and the next append adds the newline
first. An append that fails (a full disk) is taken back and raised as errors.WriteFailed.

The store and its lock file are regular files, opened where they are: a symbolic link, a folder or a
FIFO is refused as bad input (regular_files.py), so no write lands outside the store's folder.

Several processes may share a store. Each takes POSIX record locks (:mod:`.locks`) on a sidecar
file ``<store>.lock``: byte 0 is the store lock, held exclusive by an append (torn-tail repair
included) and shared by a read, so a reader never sees half a line from a live writer. Other
bytes are claims on settings keys (:meth:`Store.try_claim`), so that concurrent ``--resume``
runs do not measure the same thing twice.

Lines that are not records of this schema (bad JSON, wrong field types or ranges, missing fields)
are skipped on read, with one warning per read that counts them and names the first few; they never
reach a renderer. A record written by a newer wavemix-profile (a higher ``schema_version``) is
skipped too, named in the same warning: ``--resume`` then measures that key again and appends a
record of our schema, and reports use one answer per key, the last readable one.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Iterator

from ..core.errors import write_failed
from .locks import LockFile, lock_file
from .regular_files import open_regular
from ..core.results import SCHEMA_VERSION, NewerSchemaError, Result, result_from_dict, result_to_json

STORE_LOCK_BYTE = 0  # claims use the bytes after it


def claim_offset(key: str) -> int:
    """Byte of the sidecar that stands for `key`: 1 + a 62-bit hash, stable across processes and runs.

    Distinct keys share a byte with probability ~2**-62 per pair, which would only make one wait.
    """
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return STORE_LOCK_BYTE + 1 + (int.from_bytes(digest, "big") >> 2)


def _parse(line: bytes) -> Result:
    """One stored line as a Result; ValueError (SchemaError, NewerSchemaError, bad JSON) if it is not one."""
    try:
        return result_from_dict(json.loads(line))
    except RecursionError:  # JSON nested deeper than the parser goes: not a record either
        raise ValueError("nested too deeply to be a record") from None


_NAMED = 3  # bad lines a read's warning names, of however many


class StoreWarning(UserWarning):
    """Lines of a store that are not records of this schema were skipped (one warning per file)."""


def _holds_a_record(content: bytes) -> bool:
    """Whether any line of `content` is a record (of any schema): the file is a store."""
    for line in content.split(b"\n"):
        try:
            _parse(line)
            return True
        except NewerSchemaError:
            return True
        except ValueError:
            continue
    return False


def _skipped(bad: list[str], newer: list[tuple[int, int]]) -> str:
    """What a read skipped, in one line: the lines that are not records (the first few named with
    why), then those of a newer schema."""
    parts = []
    if len(bad) == 1:
        parts.append(bad[0])
    elif bad:
        shown = "; ".join(bad[:_NAMED]) + ("; ..." if len(bad) > _NAMED else "")
        parts.append(f"{len(bad)} lines that are not records of this schema: {shown}")
    if newer:  # a newer run may have written many
        which = ("lines " if len(newer) > 1 else "line ") + ", ".join(str(n) for n, _ in newer[:_NAMED * 3])
        versions = ", ".join(str(v) for v in sorted({v for _, v in newer}))
        parts.append(f"{which}{', ...' if len(newer) > _NAMED * 3 else ''}: written by a newer wavemix-profile "
                     f"(schema {versions}; this one reads schema {SCHEMA_VERSION} and older); upgrade to read them")
    return "; and ".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Store:
    """Append-only JSONL store of Result records, keyed by Settings.key(), safe to share between processes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @property
    def _locks(self) -> LockFile:
        # One descriptor on the sidecar per process, shared by every Store of this path: closing a
        # second one (a Store of the same path going away, say) would drop all our locks on it.
        return lock_file(self.lock_path)

    def __iter__(self) -> Iterator[Result]:
        return iter(self.read())

    def read(self) -> list[Result]:
        """Every readable record, in the order written. Other lines are skipped, with one warning for
        the file that counts them and names the first few."""
        if not os.path.lexists(self.path):
            return []
        with self._locks.hold(STORE_LOCK_BYTE, exclusive=False):
            try:
                fd = open_regular(self.path, os.O_RDONLY, "results store")
            except FileNotFoundError:
                return []
            with os.fdopen(fd, "rb") as fh:
                data = fh.read()
        results, bad, newer = [], [], []
        lines = data.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                results.append(_parse(line))
            except NewerSchemaError as exc:
                newer.append((number, exc.version))
            except ValueError as exc:
                torn = number == len(lines)  # no newline after it: an append cut short
                bad.append(f"torn last line {number} (an interrupted write): {exc}" if torn
                           else f"line {number}: {exc}")
        if bad or newer:  # one line for the file, however many lines it skips
            warnings.warn(f"{self.path}: skipping {_skipped(bad, newer)}", StoreWarning, stacklevel=2)
        return results

    def keys(self) -> set[str]:
        return {r.settings.key() for r in self.read()}

    def append(self, result: Result) -> None:
        """Add one record durably: written and fsynced before returning. A write that fails (a full
        disk) is taken back, so the store ends as it was, and raised as WriteFailed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = result_to_json(result).encode() + b"\n"
        with self._locks.hold(STORE_LOCK_BYTE, exclusive=True):
            fd = open_regular(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, "results store")
            try:
                self._mend_tail(fd)
                size = os.fstat(fd).st_size
                try:
                    _write_all(fd, line)
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)  # cutting needs no room on the disk
                    raise
            except OSError as exc:
                raise write_failed(self.path, exc) from None
            finally:
                os.close(fd)

    @staticmethod
    def _mend_tail(fd: int) -> None:
        """End the file in a newline (under the store lock): finish a complete last record, or cut a
        torn one, but only in a file shown to be a store (a record before it); else keep its bytes."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        content = os.pread(fd, size, 0)
        keep = content.rfind(b"\n") + 1
        try:
            _parse(content[keep:])
        except NewerSchemaError:
            pass  # complete, just not ours to read: keep it
        except ValueError:
            if _holds_a_record(content[:keep]):
                os.ftruncate(fd, keep)
                return
        _write_all(fd, b"\n")  # O_APPEND: lands at the end

    def try_claim(self, key: str) -> bool:
        """Claim `key` (a Settings.key()) without waiting: True if this process now holds it.

        A claim says "this process is measuring key". It is an exclusive record lock, so the OS
        drops it when the process exits, however it exits: there are no stale claims. Claims of
        one process never conflict (POSIX semantics): a second try_claim of a key this process
        holds, from any thread or Store of this path, succeeds, and one release drops it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self._locks.try_lock(claim_offset(key))

    def wait_claim(self, key: str) -> None:
        """Claim `key`, waiting until no other process holds it (see try_claim)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._locks.lock(claim_offset(key))

    def release(self, key: str) -> None:
        """Give back the claim on `key`; nothing happens if this process does not hold it."""
        self._locks.unlock(claim_offset(key))
