"""The result store: JSON Lines, one record per line, appended, flushed and fsynced one at a time.

A run killed at any moment loses at most the measurement in flight. A torn last line (an append
cut short) is skipped on read with a warning and cut off before the next append, so it never
glues itself to a good record.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Iterator

from .results import Result, result_from_dict, result_to_json


class Store:
    """Append-only JSONL store of Result records, keyed by Settings.key()."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __iter__(self) -> Iterator[Result]:
        return iter(self.read())

    def read(self) -> list[Result]:
        """Every complete record, in the order written; torn or unreadable lines are skipped with a warning."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        results = []
        lines = data.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                results.append(result_from_dict(json.loads(line)))
            except (ValueError, TypeError, KeyError) as exc:
                torn = number == len(lines)  # the last line has no newline after it: a cut-short write
                what = "torn last line (an interrupted write)" if torn else f"unreadable line {number}"
                warnings.warn(f"{self.path}: skipping {what}: {exc}", stacklevel=2)
        return results

    def keys(self) -> set[str]:
        return {r.settings.key() for r in self.read()}

    def append(self, result: Result) -> None:
        """Add one record durably: written, flushed and fsynced before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = result_to_json(result).encode() + b"\n"
        with open(self.path, "a+b") as fh:
            self._cut_torn_tail(fh)
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _cut_torn_tail(fh) -> None:
        """Drop bytes after the last newline: what an interrupted append left behind."""
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        content = fh.read()
        keep = content.rfind(b"\n") + 1
        fh.truncate(keep)
        fh.seek(keep)
