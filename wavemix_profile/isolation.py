"""Run each model in its own fresh process, which can neither hang the run nor outlive it.

An out-of-memory error, a CUDA error, a crash or allocator fragmentation in one model never
reaches another: each model's child starts with a clean device and measures that model's image
sizes one after another. Messages come back on a private pipe (protocol.py), so nothing a model
prints can be taken for one. Every request gets exactly one Result:

- a child that dies mid-request (a signal, a non-zero exit) gives that request an error Result
  with the cause and the last line it printed; the model's remaining requests go on in a new child;
- a child that exits 0 without delivering every result (model code called os._exit) gives each
  missing request an error Result, and is not started again;
- a request still running after `timeout_s` has its child's process group killed and an error
  Result saying so; the remaining requests go on in a new child;
- a child that exits non-zero after delivering everything loses nothing.

Children run in a session of their own and die with the parent: on Ctrl-C, SIGTERM or the
caller giving up the parent kills the child's process group, and if the parent is SIGKILLed the
child sees its lifeline pipe close and kills its own group (worker.py). No temporary files are made.

Timed blocks run alone. A child about to time sends Timing(begins=True) and waits; its parent
stops every other child of the run (TimeAlone: SIGSTOP to each one's process group), then writes
the go-ahead on the lifeline; Timing(begins=False), or the child's end, continues them. With one
child at a time that is a formality; with several (runner.Lanes) untimed stages of different
models overlap, and no timing shares the machine with them.

On Linux the children are forked by a fork server (forkserver.py) that has torch and the measuring
code imported, so a child starts in milliseconds instead of seconds; FORK_SERVER_ENV=0, or a server
that cannot start, gives each child a fresh interpreter instead.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator, Optional, Sequence, Union

from .forkserver import Forked, fork_child
from .protocol import Event, Finished, ProtocolError, Started, Timing, decode
from .results import Result, Settings, to_dict

DEFAULT_TIMEOUT_S = 1800.0  # one measurement (one model at one size); --timeout, 0 for none
_OUTPUT_TAIL_BYTES = 4096   # of the child's stdout and stderr, for the cause of a death
_EXIT_GRACE_S = 10.0        # after the channel closes, how long the child gets to exit

OnEvent = Callable[[int, Event], None]   # (index of the request in the list, event)


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

    def start(self, spawn: Callable[[], "Child"]) -> "Child":
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


def run_isolated(settings: Settings, *, on_event: Callable[[Event], None] | None = None,
                 timeout_s: Optional[float] = DEFAULT_TIMEOUT_S) -> Result:
    """Measure one request in a child process; always returns a Result."""
    forward = (lambda index, event: on_event(event)) if on_event else None
    return next(iter_isolated([settings], on_event=forward, timeout_s=timeout_s))


def iter_isolated(requests: Sequence[Settings], *, on_event: OnEvent | None = None,
                  timeout_s: Optional[float] = DEFAULT_TIMEOUT_S,
                  alone: Optional[TimeAlone] = None) -> Iterator[Result]:
    """Yield one Result per request, in order, as each lands; one child runs them all unless it
    dies or times out, when a new one takes the rest. Each child settles at least one request, so
    at most len(requests) children are started. timeout_s: None or 0 for no limit. `alone`: the
    children of other lanes of the run, stopped while one of these times (default: none)."""
    alone = alone or TimeAlone()
    position = 0
    while position < len(requests):
        offset = position
        shifted = (lambda index, event: on_event(offset + index, event)) if on_event else None
        for result in _one_child(list(requests[position:]), shifted, timeout_s or None, alone):
            position += 1
            yield result


class _Tail:
    """The last bytes a child printed, for an error message."""

    def __init__(self):
        self.data = b""

    def feed(self, chunk: bytes) -> None:
        self.data = (self.data + chunk)[-_OUTPUT_TAIL_BYTES:]

    def last_line(self) -> str:
        lines = [ln.strip() for ln in self.data.decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""


Child = Union[subprocess.Popen, Forked]


def _spawn(requests: list[Settings], alone: TimeAlone) -> tuple[Child, int, int, int]:
    """The child, with the read ends of its channel and output and the write end of its lifeline."""
    channel_r, channel_w = os.pipe()
    lifeline_r, lifeline_w = os.pipe()
    output_r, output_w = os.pipe()
    stdin_r, stdin_w = os.pipe()

    def spawn() -> Child:
        forked = fork_child(stdin=stdin_r, output=output_w, channel=channel_w, lifeline=lifeline_r)
        return forked or subprocess.Popen(
            [sys.executable, "-m", "wavemix_profile.worker", str(channel_w), str(lifeline_r)], stdin=stdin_r,
            stdout=output_w, stderr=subprocess.STDOUT, pass_fds=(channel_w, lifeline_r), start_new_session=True)

    try:
        proc = alone.start(spawn)
    except BaseException:
        for fd in (channel_r, lifeline_w, output_r, stdin_w):
            os.close(fd)
        raise
    finally:
        for fd in (channel_w, lifeline_r, output_w, stdin_r):
            os.close(fd)
    with open(stdin_w, "wb") as stdin:
        stdin.write(json.dumps({"requests": [to_dict(s) for s in requests],
                                "untimed_threads": alone.untimed_threads}).encode())
    return proc, channel_r, output_r, lifeline_w


def _kill_group(proc: Child) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group id is its pid
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _one_child(requests: list[Settings], on_event: OnEvent | None, timeout_s: Optional[float],
               alone: TimeAlone) -> Iterator[Result]:
    """Results from one child, in order; ends with the error Results its death or timeout leaves."""
    from .measure import error_result
    proc, channel, output, lifeline = _spawn(requests, alone)
    tail, pending, landed = _Tail(), b"", 0
    clock = time.monotonic()  # when the request in flight (or the child) started, less time it was stopped
    clock_stops = 0.0         # alone.stopped_s when the clock was set
    failure: str | None = None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(channel, selectors.EVENT_READ)
            selector.register(output, selectors.EVENT_READ)
            while channel in {key.fd for key in selector.get_map().values()} and failure is None:
                wait = (None if timeout_s is None else
                        clock + timeout_s + alone.stopped_s(proc.pid) - clock_stops - time.monotonic())
                if wait is not None and wait <= 0:
                    failure = f"timed out after {timeout_s:g} s (--timeout); the measuring process was killed"
                    break
                for key, _ in selector.select(wait):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fd)
                    elif key.fd == output:
                        tail.feed(chunk)
                    else:
                        pending += chunk
                while failure is None and b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    try:
                        index, message = decode(line)
                    except ProtocolError as exc:
                        failure = f"measuring process broke the protocol: {exc}"
                        break
                    if isinstance(message, Timing) and message.begins:
                        alone.begin(proc.pid)
                        try:
                            os.write(lifeline, b"g")  # the go-ahead: the others are stopped
                        except OSError:  # the child is gone: its channel says so next
                            pass
                    elif isinstance(message, Timing):
                        alone.end(proc.pid)
                    if isinstance(message, Started):
                        clock, clock_stops = time.monotonic(), alone.stopped_s(proc.pid)
                    elif isinstance(message, Finished):
                        alone.end(proc.pid)
                        if index != landed:
                            failure = f"measuring process sent result {index} while {landed} was due"
                            break
                        landed += 1
                        yield message.result
                        clock, clock_stops = time.monotonic(), alone.stopped_s(proc.pid)
                    elif on_event:
                        on_event(index, message)
            if failure is None:  # the channel closed: the child is exiting; collect what it printed last
                try:
                    proc.wait(timeout=_EXIT_GRACE_S)
                except subprocess.TimeoutExpired:
                    pass
                while output in {key.fd for key in selector.get_map().values()} and selector.select(0.2):
                    chunk = os.read(output, 65536)
                    if not chunk:
                        break
                    tail.feed(chunk)
    finally:  # a timeout, Ctrl-C, SIGTERM or the caller giving up: take the child's whole group along
        alone.leave(proc.pid)
        os.close(lifeline)
        if proc.poll() is None:
            _kill_group(proc)
        os.close(channel)
        os.close(output)
    if landed == len(requests):
        return  # everything delivered: an exit code after that loses nothing
    elapsed = time.monotonic() - clock
    printed = f"; last output: {tail.last_line()}" if tail.last_line() else ""
    if failure is not None:
        yield error_result(requests[landed], failure + printed, elapsed)
    elif proc.returncode == 0:  # os._exit(0) or the like: it would do the same again, so no new child
        for settings in requests[landed:]:
            yield error_result(settings, "measuring process exited 0 without a result" + printed, elapsed)
    else:
        code = proc.returncode
        cause = ("ended; its exit status was lost with the fork server" if code is None else
                 f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}")
        yield error_result(requests[landed], f"measuring process {cause}{printed}", elapsed)
