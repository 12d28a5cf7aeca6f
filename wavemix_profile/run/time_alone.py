"""Timed blocks run alone: the measuring children of one run, so that one times while every other is stopped.

A child about to time sends Timing(begins=True) and waits; its parent stops every other child of the
run (SIGSTOP to each one's process group), then writes the go-ahead on the lifeline; Timing(begins=False),
or the child's end, continues them. With one child at a time that is a formality; with several
(runner.Lanes) untimed stages of different models overlap, and no timing shares the machine with them.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable, Optional


class RunClosed(RuntimeError):
    """A child was to start after the run stopped its children (TimeAlone.kill_all)."""


class TimeAlone:
    """The measuring children of one run, so that one times alone: while a child times, every
    other is stopped, and no new one starts. Thread-safe: children of parallel lanes share one.

    Seconds a child spends stopped are counted (stopped_s), so that its --timeout counts only time
    it could run. `untimed_threads`: the threads each child's untimed stages may use, a share of the
    cores when several run at once (None: as many as its timed blocks)."""

    def __init__(self, untimed_threads: Optional[int] = None):
        self.untimed_threads = untimed_threads
        self._cond = threading.Condition()
        self._stopped: dict[int, float] = {}   # pid of each live child -> seconds it has been stopped
        self._timing: Optional[int] = None     # the pid timing now
        self._since = 0.0                      # when it began (time.monotonic)
        self._closed = False

    def start(self, spawn: Callable[[], Any]) -> Any:
        """spawn() once no child times, the child then a member; RunClosed after kill_all."""
        with self._cond:
            self._cond.wait_for(lambda: self._timing is None or self._closed)
            if self._closed:
                raise RunClosed("the run is stopping")
            child = spawn()
            self._stopped[child.pid] = 0.0
            return child

    def begin(self, pid: int) -> None:
        """Wait until no other child times, then stop every other child: `pid` times alone."""
        with self._cond:
            self._cond.wait_for(lambda: self._timing is None or self._closed)
            if self._closed:
                return
            self._timing, self._since = pid, time.monotonic()
            for other in self._stopped:
                if other != pid:
                    _signal_group(other, signal.SIGSTOP)

    def end(self, pid: int) -> None:
        """`pid` has finished timing (or ended): continue the others."""
        with self._cond:
            if self._timing != pid:
                return
            took = time.monotonic() - self._since
            for other in self._stopped:
                if other != pid:
                    self._stopped[other] += took
                    _signal_group(other, signal.SIGCONT)
            self._timing = None
            self._cond.notify_all()

    def leave(self, pid: int) -> None:
        """The child has ended: no longer a member (and no longer timing)."""
        self.end(pid)
        with self._cond:
            self._stopped.pop(pid, None)

    def stopped_s(self, pid: int) -> float:
        """Seconds `pid` has spent stopped for others' timing, the current stop included."""
        with self._cond:
            ongoing = time.monotonic() - self._since if self._timing not in (None, pid) else 0.0
            return self._stopped.get(pid, 0.0) + (ongoing if pid in self._stopped else 0.0)

    def kill_all(self) -> None:
        """Ctrl-C, an error: kill every child's group (stopped ones too) and start no more."""
        with self._cond:
            self._closed = True
            for pid in self._stopped:
                _signal_group(pid, signal.SIGKILL)
            self._cond.notify_all()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # its own session: the group id is its pid
    except (ProcessLookupError, PermissionError):
        pass
