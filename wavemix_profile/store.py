"""The result store: JSON Lines, one record per line, appended, flushed and fsynced one at a time.

A run killed at any moment loses at most the measurement in flight. A last line without its
newline is torn (an append cut short) only if it does not parse as a record: it is skipped on
read with a warning and cut off before the next append, so it never glues itself to a good
record. A complete record that merely lacks its newline is kept, and the next append adds the
newline first.

Several processes may share a store. Each takes POSIX record locks (:mod:`.locks`) on a sidecar
file ``<store>.lock``: byte 0 is the store lock, held exclusive by an append (torn-tail repair
included) and shared by a read, so a reader never sees half a line from a live writer. Other
bytes are claims on settings keys (:meth:`Store.try_claim`), so that concurrent ``--resume``
runs do not measure the same thing twice.

Lines that are not records of this schema (bad JSON, wrong field types, missing fields) are
skipped on read with a warning naming the line; they never reach a renderer. A record written by
a newer wavemix-profile (a higher ``schema_version``) is skipped too, with a warning: ``--resume``
then measures that key again and appends a record of our schema, and reports use one answer per
key, the last readable one.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Iterator

from .locks import LockFile, lock_file
from .results import SCHEMA_VERSION, NewerSchemaError, Result, result_from_dict, result_to_json

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
        """Every readable record, in the order written; other lines are skipped with a warning."""
        if not self.path.exists():
            return []
        with self._locks.hold(STORE_LOCK_BYTE, exclusive=False):
            data = self.path.read_bytes()
        results, newer = [], []
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
                what = f"torn last line {number} (an interrupted write)" if torn else f"line {number}"
                warnings.warn(f"{self.path}: skipping {what}: {exc}", stacklevel=2)
        if newer:  # one warning for them all: a newer run may have written many
            which = ("lines " if len(newer) > 1 else "line ") + ", ".join(str(n) for n, _ in newer)
            versions = ", ".join(str(v) for v in sorted({v for _, v in newer}))
            warnings.warn(f"{self.path}: skipping {which}: written by a newer wavemix-profile (schema {versions}; "
                          f"this one reads schema {SCHEMA_VERSION} and older); upgrade to read them", stacklevel=2)
        return results

    def keys(self) -> set[str]:
        return {r.settings.key() for r in self.read()}

    def append(self, result: Result) -> None:
        """Add one record durably: written, flushed and fsynced before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = result_to_json(result).encode() + b"\n"
        with self._locks.hold(STORE_LOCK_BYTE, exclusive=True), open(self.path, "a+b") as fh:
            self._mend_tail(fh)
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _mend_tail(fh) -> None:
        """End the file in a newline: finish a complete last record, or cut a torn one (under the store lock)."""
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        content = fh.read()
        keep = content.rfind(b"\n") + 1
        try:
            _parse(content[keep:])
        except NewerSchemaError:
            pass  # complete, just not ours to read: keep it
        except ValueError:
            fh.truncate(keep)
            return
        fh.write(b"\n")  # "a" mode: lands at the end whatever the position

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
