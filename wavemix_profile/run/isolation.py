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

A child's work ends with its last Finished message (or its exit), not with end-of-file on its
pipes: a process the model forked may hold them open. Whatever the child's model started is then
ended with it (process_tree.end_tree), whether or not the child itself has exited.

The time limit counts the time a request could run: what waits on the channel is read before a
deadline is judged, and neither the child's stops for others' timing nor this process's own pauses
(SIGSTOP, a starved machine: the child may have waited on it) count against it.

Children run in a session of their own and die with the parent: on Ctrl-C, SIGTERM or the
caller giving up the parent ends the child's tree, and if the parent is SIGKILLed the child sees
its lifeline pipe close and ends its own (worker.py). No temporary files are made.

Timed blocks run alone (time_alone.TimeAlone). A user's model file is loaded in children only:
check_isolated loads and checks a request's model in a child before a run measures anything.

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
import time
from typing import Callable, Iterator, Optional, Sequence, Union

from .forkserver import Forked, fork_child
from .process_tree import Spawned
from ..core.protocol import Checked, Event, Finished, Probe, ProtocolError, Started, Timing, decode
from ..core.results import Result, Settings, to_dict
from .time_alone import RunClosed, TimeAlone  # noqa: F401 - RunClosed: callers catch it from here

DEFAULT_TIMEOUT_S = 1800.0  # one measurement (one model at one size); --timeout, 0 for none
_OUTPUT_TAIL_BYTES = 4096   # of the child's stdout and stderr, for the cause of a death
_EXIT_GRACE_S = 10.0        # after its last result or the channel's end, how long the child gets to exit
_OUTPUT_WAIT_S = 1.0        # for what it printed last, once its tree is ended
_TICK_S = 1.0               # the loop looks at the child (its exit, its clock) at least this often
_PAUSED_S = 5.0             # a loop turn this much longer than asked for: this process was paused

OnEvent = Callable[[int, Event], None]   # (index of the request in the list, event)


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


class _Clock:
    """Seconds the request in flight could run since it started: wall time, less the child's stops for
    others' timing (TimeAlone.stopped_s), less any turn of the loop that took far longer than it
    asked for: this process was stopped or starved meanwhile, and the child may have waited on it."""

    def __init__(self, alone: TimeAlone, pid: int):
        self._alone, self._pid = alone, pid
        self.restart()

    def restart(self) -> None:
        self.began, self._last, self._ran = time.monotonic(), time.monotonic(), 0.0
        self._stops = self._alone.stopped_s(self._pid)

    def tick(self, asked_s: float) -> None:
        now = time.monotonic()
        self._ran += min(now - self._last, asked_s + _PAUSED_S)
        self._last = now

    def ran(self) -> float:
        return self._ran - (self._alone.stopped_s(self._pid) - self._stops)


class _Pipes:
    """The child's channel (messages) and output (what its model printed), read as they become ready."""

    def __init__(self, channel: int, output: int):
        self.channel, self.output = channel, output
        self.selector = selectors.DefaultSelector()
        for fd in (channel, output):
            self.selector.register(fd, selectors.EVENT_READ)
        self.tail, self.pending, self.channel_open = _Tail(), b"", True

    def read(self, wait: Optional[float]) -> None:
        """Read whatever is ready within `wait` seconds (0: only what waits now)."""
        if not self.selector.get_map():
            return
        for key, _ in self.selector.select(wait):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                self.selector.unregister(key.fd)
                self.channel_open = self.channel_open and key.fd != self.channel
            elif key.fd == self.output:
                self.tail.feed(chunk)
            else:
                self.pending += chunk

    def lines(self) -> Iterator[bytes]:
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            yield line

    def last_output(self, wait_s: float) -> None:
        """What the child printed last, read until end-of-file or for at most wait_s seconds (a
        process that left the session may hold the pipe)."""
        deadline = time.monotonic() + wait_s
        while self.output in {key.fd for key in self.selector.get_map().values()} and time.monotonic() < deadline:
            self.read(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self.selector.close()
        os.close(self.channel)
        os.close(self.output)


Child = Union[Spawned, Forked]


def _spawn(requests: list[Settings], alone: TimeAlone, task: dict) -> tuple[Child, int, int, int]:
    """The child, with the read ends of its channel and output and the write end of its lifeline."""
    channel_r, channel_w = os.pipe()
    lifeline_r, lifeline_w = os.pipe()
    output_r, output_w = os.pipe()
    stdin_r, stdin_w = os.pipe()

    def spawn() -> Child:
        forked = fork_child(stdin=stdin_r, output=output_w, channel=channel_w, lifeline=lifeline_r)
        return forked or Spawned(subprocess.Popen(
            [sys.executable, "-m", "wavemix_profile.run.worker", str(channel_w), str(lifeline_r)], stdin=stdin_r,
            stdout=output_w, stderr=subprocess.STDOUT, pass_fds=(channel_w, lifeline_r), start_new_session=True))

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
        stdin.write(json.dumps({"requests": [to_dict(s) for s in requests], **task,
                                "untimed_threads": alone.untimed_threads}).encode())
    return proc, channel_r, output_r, lifeline_w


def _one_child(requests: list[Settings], on_event: OnEvent | None, timeout_s: Optional[float],
               alone: TimeAlone, *, check: bool = False,
               probe: Optional[tuple[str, int]] = None) -> Iterator[Union[Result, Checked, Probe]]:
    """What one child delivers, in order: Results; Checked with `check`; with `probe` (mode, batch) the
    Probe of its one request. Ends with what its death or timeout leaves: a Checked refusal with
    `check`, else an error Result, for each request it did not settle."""
    proc, channel, output, lifeline = _spawn(requests, alone, {"check": check, "probe": probe})
    settling = (Finished, Checked, Probe) if probe else (Finished, Checked)
    pipes, clock = _Pipes(channel, output), _Clock(alone, proc.pid)
    landed, failure = 0, None

    def messages() -> Iterator[Union[Result, Checked]]:
        nonlocal landed, failure
        for line in pipes.lines():
            try:
                index, message = decode(line)
            except ProtocolError as exc:
                failure = f"measuring process broke the protocol: {exc}"
                return
            if isinstance(message, Timing) and message.begins:
                alone.begin(proc.pid)
                try:
                    os.write(lifeline, b"g")  # the go-ahead: the others are stopped
                except OSError:  # the child is gone: its channel says so next
                    pass
            elif isinstance(message, Timing):
                alone.end(proc.pid)
            if isinstance(message, Started):
                clock.restart()
            elif isinstance(message, settling):
                alone.end(proc.pid)
                if index != landed:
                    failure = f"measuring process sent result {index} while {landed} was due"
                    return
                landed += 1
                yield message.result if isinstance(message, Finished) else message
                clock.restart()
            elif on_event:
                on_event(index, message)

    try:
        while landed < len(requests) and failure is None and pipes.channel_open:
            wait = _TICK_S if timeout_s is None else max(0.0, min(_TICK_S, timeout_s - clock.ran()))
            pipes.read(wait)
            clock.tick(wait)
            if timeout_s is not None and clock.ran() >= timeout_s:
                pipes.read(0)  # what waits first: a stopped and continued process's select returns empty
            yield from messages()
            if landed == len(requests) or failure is not None or not pipes.channel_open:
                break
            if proc.exited():  # a process it forked may hold the channel open: take what it sent
                pipes.read(0)
                yield from messages()
                break
            if timeout_s is not None and clock.ran() >= timeout_s:
                failure = f"timed out after {timeout_s:g} s (--timeout); the measuring process was killed"
        if failure is None:  # delivered, or the channel closed: it is exiting by itself
            proc.wait_exit(_EXIT_GRACE_S)
    finally:  # done, a timeout, Ctrl-C, SIGTERM or the caller giving up: end the child's whole tree
        alone.leave(proc.pid)
        os.close(lifeline)
        proc.end()
        pipes.last_output(_OUTPUT_WAIT_S)
        pipes.close()
    if landed == len(requests):
        return  # everything delivered: an exit code after that loses nothing
    elapsed = time.monotonic() - clock.began
    printed = f"; last output: {pipes.tail.last_line()}" if pipes.tail.last_line() else ""
    code = proc.returncode
    if failure is not None:
        causes = [failure] + [None] * (len(requests) - landed - 1)
    elif code == 0:  # os._exit(0) or the like: it would do the same again, so no new child
        causes = ["measuring process exited 0 without a result"] * (len(requests) - landed)
    else:
        cause = ("ended; its exit status was lost with the fork server" if code is None else
                 f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}")
        causes = [f"measuring process {cause}"] + [None] * (len(requests) - landed - 1)
    for settings, cause in zip(requests[landed:], causes):
        if cause is None:
            return  # the rest go on in a new child
        yield Checked(_refusal(settings, cause + printed)) if check else _error_result(settings, cause + printed,
                                                                                       elapsed)


def _error_result(settings: Settings, error: str, elapsed: float) -> Result:
    from ..measure.measure import error_result
    return error_result(settings, error, elapsed)


def _refusal(settings: Settings, cause: str) -> str:
    return f"cannot load model {settings.model!r}: {cause}"


def check_isolated(requests: Sequence[Settings], *,
                   timeout_s: Optional[float] = DEFAULT_TIMEOUT_S) -> list[Optional[str]]:
    """Load and check each request's model in a child (a user's model file never runs in this
    process): None for each that can run, else why not, one line. The child's death, its exit
    (sys.exit or os._exit in the model file's code) or the time limit are refusals too."""
    refusals: list[Optional[str]] = []
    while len(refusals) < len(requests):
        for checked in _one_child(list(requests[len(refusals):]), None, timeout_s or None, TimeAlone(), check=True):
            refusals.append(checked.refusal)
    return refusals


def probe_isolated(settings: Settings, mode: str, batch: int, *,
                   timeout_s: Optional[float] = DEFAULT_TIMEOUT_S) -> Union[Probe, str]:
    """Does `batch` fit for `mode` ("train" or "infer")? measure.probe run in a child of its own, which
    nothing run before it has touched: no allocator cache, cuDNN plan or fragmentation of an earlier
    probe helps or hurts it. The Probe, or why the child gave none (its death, its exit, the time
    limit), one line."""
    # the child's one answer, the generator run to its end: the child is ended and awaited there
    (answer,) = _one_child([settings], None, timeout_s or None, TimeAlone(), probe=(mode, batch))
    return answer if isinstance(answer, Probe) else answer.error


def check_request(settings: Settings, timeout_s: float | None = None) -> None:
    """measure.validate, without running a user's code in this process: a python: model is loaded and
    checked in a child (check_isolated, within `timeout_s`, default --timeout's), once per spec and
    working folder while its file is unchanged. Raises BadInputError naming what is wrong."""
    from ..core.errors import BadInputError
    from ..measure.measure import _check_model, _check_settings
    from ..sources.sources import check_python_spec, resolve_source, runs_user_code
    _check_settings(settings)
    if not runs_user_code(settings.model):
        _check_model(settings, resolve_source(settings.model))
        return
    check_python_spec(settings.model)
    module = settings.model.removeprefix("python:").rpartition(":")[0]
    try:
        found = os.stat(module)  # a model file: checked again once it changes
        stamp = (found.st_ino, found.st_size, found.st_mtime_ns)
    except OSError:
        stamp = None
    key = (settings.model, os.getcwd(), stamp)
    if key not in _CHECKED:
        _CHECKED[key] = check_isolated([settings], timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s)[0]
    if _CHECKED[key] is not None:
        raise BadInputError(_CHECKED[key])


_CHECKED: dict[tuple, str | None] = {}  # check_request's answers: (spec, folder, file stamp) -> refusal
