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
from .protocol import Event, Finished, ProtocolError, Started, decode
from .results import Result, Settings, to_dict

DEFAULT_TIMEOUT_S = 1800.0  # one measurement (one model at one size); --timeout, 0 for none
_OUTPUT_TAIL_BYTES = 4096   # of the child's stdout and stderr, for the cause of a death
_EXIT_GRACE_S = 10.0        # after the channel closes, how long the child gets to exit

OnEvent = Callable[[int, Event], None]   # (index of the request in the list, event)


def run_isolated(settings: Settings, *, on_event: Callable[[Event], None] | None = None,
                 timeout_s: Optional[float] = DEFAULT_TIMEOUT_S) -> Result:
    """Measure one request in a child process; always returns a Result."""
    forward = (lambda index, event: on_event(event)) if on_event else None
    return next(iter_isolated([settings], on_event=forward, timeout_s=timeout_s))


def iter_isolated(requests: Sequence[Settings], *, on_event: OnEvent | None = None,
                  timeout_s: Optional[float] = DEFAULT_TIMEOUT_S) -> Iterator[Result]:
    """Yield one Result per request, in order, as each lands; one child runs them all unless it
    dies or times out, when a new one takes the rest. Each child settles at least one request, so
    at most len(requests) children are started. timeout_s: None or 0 for no limit."""
    position = 0
    while position < len(requests):
        offset = position
        shifted = (lambda index, event: on_event(offset + index, event)) if on_event else None
        for result in _one_child(list(requests[position:]), shifted, timeout_s or None):
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


def _spawn(requests: list[Settings]) -> tuple[Child, int, int, int]:
    """The child, with the read ends of its channel and output and the write end of its lifeline."""
    channel_r, channel_w = os.pipe()
    lifeline_r, lifeline_w = os.pipe()
    output_r, output_w = os.pipe()
    stdin_r, stdin_w = os.pipe()
    try:
        proc = fork_child(stdin=stdin_r, output=output_w, channel=channel_w, lifeline=lifeline_r)
        if proc is None:
            proc = subprocess.Popen([sys.executable, "-m", "wavemix_profile.worker", str(channel_w), str(lifeline_r)],
                                    stdin=stdin_r, stdout=output_w, stderr=subprocess.STDOUT,
                                    pass_fds=(channel_w, lifeline_r), start_new_session=True)
    except BaseException:
        for fd in (channel_r, lifeline_w, output_r, stdin_w):
            os.close(fd)
        raise
    finally:
        for fd in (channel_w, lifeline_r, output_w, stdin_r):
            os.close(fd)
    with open(stdin_w, "wb") as stdin:
        stdin.write(json.dumps([to_dict(s) for s in requests]).encode())
    return proc, channel_r, output_r, lifeline_w


def _kill_group(proc: Child) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group id is its pid
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _one_child(requests: list[Settings], on_event: OnEvent | None, timeout_s: Optional[float]) -> Iterator[Result]:
    """Results from one child, in order; ends with the error Results its death or timeout leaves."""
    from .measure import error_result
    proc, channel, output, lifeline = _spawn(requests)
    tail, pending, landed = _Tail(), b"", 0
    clock = time.monotonic()  # when the request in flight (or the child) started
    failure: str | None = None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(channel, selectors.EVENT_READ)
            selector.register(output, selectors.EVENT_READ)
            while channel in {key.fd for key in selector.get_map().values()} and failure is None:
                wait = None if timeout_s is None else clock + timeout_s - time.monotonic()
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
                    if isinstance(message, Started):
                        clock = time.monotonic()
                    elif isinstance(message, Finished):
                        if index != landed:
                            failure = f"measuring process sent result {index} while {landed} was due"
                            break
                        landed += 1
                        yield message.result
                        clock = time.monotonic()
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
