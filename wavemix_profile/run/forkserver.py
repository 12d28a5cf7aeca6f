"""The fork server: measuring children forked warm, each as `python -m wavemix_profile.run.worker` would be.

`python -m wavemix_profile.run.forkserver CONTROL_FD` imports what a measurement needs once (torch,
the measuring code, the zoo, fvcore), then forks one child per request that arrives on the CONTROL_FD
socket, so a child starts in milliseconds instead of seconds. It runs no torch op before forking, so
no thread pool exists to be copied half-made, and a child sets up its threads as a fresh process
does. A child leads a session of its own, reads its requests on its stdin, reports on its channel and
dies with the parent through its lifeline, exactly as a spawned worker (worker.py).

A request carries the child's pipes (SCM_RIGHTS), a status pipe on which the server writes "pid PID",
then, once it has reaped the child, "exit CODE" or "signal NUMBER", and the folder the request was
made in: the child starts there, with that folder first on sys.path where the server had its own, as
`python -m` in that folder would. The parent holds one server per run (fork_child starts it on first
use) and a new one when the environment changes, since the server's imports saw it. The command line
forks its server from itself once it has imported torch (_fork_server), before anything else has run
there; any other caller gets a fresh interpreter, since torch may have run in it. When the control
socket closes (the run is done, or dead) the server takes no more requests, continues any child still
stopped for another's timing (a stopped child cannot see its lifeline close) and exits once its
children have. Before it reaps a child it ends whatever the child's model left running
(process_tree.end_tree).
"""
from __future__ import annotations

import atexit
import gc
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Callable, Optional

from .process_tree import end_tree, signal_on_parent_death

FORK_SERVER_ENV = "WAVEMIX_PROFILE_FORK_SERVER"  # "0": start every child as a fresh interpreter
_SERVER_START_S = 300.0  # the server's imports (no one measurement's), on a busy machine
_EXIT_WAIT_S = 10.0      # at the run's end, for the server to reap its last children and exit
# What a measurement imports, loaded once by the fork server (import only: no torch op runs). The
# first FLOP count and fake-tensor estimate pull in torch._dynamo and sympy, about as long as torch.
PRELOAD = ("torch", "torch._dynamo", "torch._subclasses.fake_tensor", "torch.utils.flop_counter",
           "wavemix_profile.measure.measure", "wavemix_profile.measure.flops", "wavemix_profile.measure.memory",
           "wavemix_profile.measure.probes", "wavemix_profile.measure.throughput", "wavemix_profile.measure.energy",
           "wavemix_profile.estimate.reserved")
_CHILD_FDS = ("stdin", "output", "channel", "lifeline", "status")  # the fds of a request, in order
_FORK = b"fork "  # a request's message: this, then the folder the child starts in


# --- the parent's side ------------------------------------------------------------------------

class Forked:
    """A child the fork server started: Popen's pid, poll(), wait() and returncode, read from the status
    pipe the server writes its exit status on. returncode stays None if the server died first."""

    def __init__(self, pid: int, status_fd: int, pending: bytes = b""):
        self.pid, self._status, self._pending, self.returncode = pid, status_fd, pending, None
        self._parse()

    def _parse(self) -> None:
        if b"\n" in self._pending and self._status is not None:
            kind, value = self._pending.split(b"\n", 1)[0].decode().split()
            self.returncode = -int(value) if kind == "signal" else int(value)
            self._close()

    def _close(self) -> None:
        if self._status is not None:
            os.close(self._status)
            self._status = None

    def _read(self, timeout: Optional[float]) -> None:
        if self._status is not None and select.select([self._status], [], [], timeout)[0]:
            chunk = os.read(self._status, 256)
            self._pending += chunk
            self._close() if not chunk else self._parse()

    def poll(self) -> Optional[int]:
        self._read(0)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._status is not None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("wavemix_profile.run.worker", timeout)
            self._read(left)
        return self.returncode

    # process_tree.Spawned's interface: the server ends a child's tree before it reaps the child
    def exited(self) -> bool:
        return self.poll() is not None or self._status is None

    def wait_exit(self, timeout_s: float) -> bool:
        try:
            self.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def end(self) -> Optional[int]:
        """End the child's whole tree (the server did, if it has exited), then its exit status."""
        if not self.exited():
            end_tree(self.pid)
        return self.wait()


class _Server:
    """The parent's end of one fork server, for one environment; `from_here`: forked
    from this process (_fork_server) rather than started as a fresh interpreter."""

    def __init__(self, key, *, from_here: bool = False):
        self.key = key
        self.forked = False  # whether any child was asked for: a server never used is ended, not awaited
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            if from_here:
                self.proc = _fork_server(theirs.fileno())
            else:
                self.proc = subprocess.Popen([sys.executable, "-m", "wavemix_profile.run.forkserver",
                                              str(theirs.fileno())], stdin=subprocess.DEVNULL,
                                             pass_fds=(theirs.fileno(),),
                                             start_new_session=True)  # Ctrl-C is the parent's to handle
        finally:
            theirs.close()

    def fork(self, fds: tuple[int, ...]) -> Forked:
        """Send the child's pipes; the server forks it and writes its pid. OSError if it cannot."""
        self.forked = True
        status_r, status_w = os.pipe()
        try:
            socket.send_fds(self.control, [_FORK + os.fsencode(os.getcwd())], [*fds, status_w])
        except OSError:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        pending, deadline = b"", time.monotonic() + _SERVER_START_S
        while b"\n" not in pending:  # the first request waits for the server's imports
            if time.monotonic() > deadline:
                os.close(status_r)
                raise OSError(f"the fork server did not start a child within {_SERVER_START_S:g} s")
            chunk = os.read(status_r, 256) if select.select([status_r], [], [], 0.5)[0] else None
            if chunk == b"":
                os.close(status_r)
                raise OSError(f"the fork server exited with code {self.proc.wait()}")
            pending += chunk or b""
        line, rest = pending.split(b"\n", 1)
        return Forked(int(line.split()[1]), status_r, rest)

    def close(self, wait_s: float = 0.0) -> None:
        """No more requests: the server exits once its children have. One that never forked a
        child (the run stopped at bad input) is killed: its imports are of no use now."""
        self.control.close()
        if not self.forked:
            self.proc.kill()
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            pass


class _ForkedServer:
    """A server forked from this process (its child): Popen's pid, wait(timeout) and kill()."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None
        self._exits = os.pidfd_open(pid)  # readable once the server has exited

    def wait(self, timeout: Optional[float] = None) -> int:
        if self.returncode is None:
            if not select.select([self._exits], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired("wavemix_profile.run.forkserver", timeout)
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            os.close(self._exits)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)  # not yet reaped: the pid is still the server's


def _may_fork_here() -> bool:
    """Whether the server may be forked from this process: it has not imported torch (so has run no
    torch op: no thread pool to copy half-made) nor started a thread, as at the command line's start."""
    return "torch" not in sys.modules and threading.active_count() == 1 and hasattr(os, "pidfd_open")


def _fork_server(control_fd: int) -> _ForkedServer:
    """The server, forked from this process once it has imported torch (the command line's checks need
    torch too: one import for both, ~1.2 CPU-s saved per run); the server then imports the rest (PRELOAD)
    while this process goes on. As the fresh interpreter would be: a session of its own (Ctrl-C is the
    parent's to handle), default handlers for Ctrl-C and SIGTERM, stdin from /dev/null, and no file of
    this process open but stdout, stderr and its control socket."""
    import torch  # noqa: F401 - imported here, before the fork, for this process and the server both

    def server() -> int:
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        nothing = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nothing, 0)
        os.closerange(3, control_fd)
        os.closerange(control_fd + 1, os.sysconf("SC_OPEN_MAX"))
        return serve(control_fd)
    return _ForkedServer(_fork_running(server))


def _fork_running(body: Callable[[], int]) -> int:
    """Fork; the caller gets the child's pid. The child runs body() and exits with the code it returns
    (1 if it raises, the traceback on stderr), never unwinding into the caller's code nor running its
    exit handlers."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = body()
    except BaseException:  # noqa: BLE001 - nothing may unwind into the code that forked
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# Variables torch's own imports set, to a default they derive, when the parent imports them after its
# server started (TORCHINDUCTOR_CACHE_DIR: torch._dynamo's import): the server's imports set the same,
# so they change nothing a child would inherit. Counted as a change, every run started a second server.
_SET_BY_IMPORTS = frozenset({"TORCHINDUCTOR_CACHE_DIR"})

_lock = threading.Lock()
_state: dict = {"server": None, "broken": False}


def _current_server(*, from_here: bool = False) -> Optional[_Server]:
    """This run's server for the present environment, started if need be (hold _lock);
    None where no server is to be used (FORK_SERVER_ENV=0, not Linux, or it failed). `from_here`: fork
    a server it starts from this process where _may_fork_here says it may."""
    if os.environ.get(FORK_SERVER_ENV, "1") == "0" or not sys.platform.startswith("linux") or _state["broken"]:
        return None
    # The folder travels with each request; a relative PYTHONPATH entry names a folder from the one the
    # server started in, so there the folder is part of what its imports saw.
    relative = any(entry and not os.path.isabs(entry) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep))
    key = (sys.executable, os.getcwd() if relative else None,
           tuple(sorted((name, value) for name, value in os.environ.items() if name not in _SET_BY_IMPORTS)))
    server = _state["server"]
    if server is None or server.key != key:  # what a fresh child would inherit has changed
        if server is None:
            atexit.register(_close_server)
        else:
            server.close()
        server = _state["server"] = _Server(key, from_here=from_here and _may_fork_here())
    return server


def start_server() -> None:
    """Start this run's server now, so that its imports overlap the caller's own (a command that
    will measure calls it first thing); fork_child uses it while nothing a child inherits changes.
    Called before this process has imported torch, it imports torch and forks the server from itself."""
    with _lock:
        _current_server(from_here=True)


def fork_child(*, stdin: int, output: int, channel: int, lifeline: int) -> Optional[Forked]:
    """A measuring child on these pipes (the ends it keeps), forked by this run's server, started on
    first use; None where no server is to be used (FORK_SERVER_ENV=0, not Linux, or it failed)."""
    with _lock:
        server = _current_server()
        if server is None:
            return None
        try:
            return server.fork((stdin, output, channel, lifeline))
        except OSError as exc:
            print(f"wavemix-profile: {exc}; each measuring process starts afresh", file=sys.stderr)
            _state["broken"] = True
            return None


def _close_server() -> None:
    if _state["server"] is not None:
        _state["server"].close(wait_s=_EXIT_WAIT_S)  # so the run's CPU time includes the server's


# --- the server's side ------------------------------------------------------------------------

def _preload() -> None:
    import importlib
    for name in PRELOAD:
        importlib.import_module(name)
    from ..measure.flops import import_fvcore
    from ..models import list_models
    list_models()  # the zoo's family modules
    try:
        import_fvcore()
    except ImportError:  # optional until a count asks for it; the child says so then
        pass


def serve(control_fd: int) -> int:
    """The fork server's loop; returns when the control socket has closed and every child is reaped."""
    from .worker import Trace
    trace = Trace.from_env()
    started_in = os.getcwd()
    _preload()
    # What the imports made lives as long as the server: kept out of the cyclic collector's passes,
    # which in a forked child would otherwise walk it all and write to every page it touches (a
    # copy of each) while finding nothing to free
    gc.freeze()
    trace.phase("fork server start-up and imports", since_start=True)
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # only to wake the select below
    status: dict[int, int] = {}  # pid -> write end of its status pipe
    listening = True
    while listening or status:
        ready = select.select([control, wake_r] if listening else [wake_r], [], [])[0]
        if wake_r in ready:
            os.read(wake_r, 4096)
        _reap(status)
        if listening and control in ready:
            try:
                message, fds, _, _ = socket.recv_fds(control, len(_FORK) + 4096, len(_CHILD_FDS))
            except OSError:
                message, fds = b"", []
            if len(fds) != len(_CHILD_FDS):
                for fd in fds:
                    os.close(fd)
                listening = bool(message)  # end of file: the parent is done, or dead
                if not listening:  # a child stopped for another's timing cannot see its lifeline close
                    for pid in status:
                        try:
                            os.killpg(pid, signal.SIGCONT)
                        except (ProcessLookupError, PermissionError):
                            pass
                continue
            pid = _fork(dict(zip(_CHILD_FDS, fds)), os.fsdecode(message[len(_FORK):]), started_in,
                        own=[control.fileno(), wake_r, wake_w, *status.values()])
            _tell(fds[-1], f"pid {pid}")
            status[pid] = fds[-1]
            for fd in fds[:-1]:
                os.close(fd)
    return 0


def _tell(fd: int, line: str) -> None:
    try:
        os.write(fd, line.encode() + b"\n")
    except OSError:  # the parent stopped listening (it gave up on this child): nothing to tell
        pass


def _reap(status: dict[int, int]) -> None:
    """End what each exited child left running (its pid names its group until it is reaped), reap it,
    and write its status ("exit CODE" or "signal NUMBER") on its pipe and close it."""
    for pid in list(status):
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            continue
        end_tree(pid)
        done, code = os.waitpid(pid, 0)
        if done:
            _tell(status[pid], f"signal {os.WTERMSIG(code)}" if os.WIFSIGNALED(code)
                  else f"exit {os.waitstatus_to_exitcode(code)}")
            os.close(status.pop(pid))


def _fork(fds: dict[str, int], folder: str, started_in: str, own: list[int]) -> int:
    """Fork a measuring child on these pipes, in `folder`; the parent gets its pid, the child never
    returns. Where the server's sys.path starts with the folder it started in (`python -m` puts it
    there), the child's starts with `folder` instead."""
    forked_at = time.perf_counter()

    def child() -> int:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in own:
            os.close(fd)
        os.setsid()
        signal_on_parent_death(signal.SIGCONT)  # the server gone: wake, and see whether the run is
        os.dup2(fds["stdin"], 0)
        os.dup2(fds["output"], 1)
        os.dup2(fds["output"], 2)
        os.close(fds["stdin"])
        os.close(fds["output"])
        os.close(fds["status"])
        os.chdir(folder)
        if sys.path and sys.path[0] == started_in:
            sys.path[0] = folder
        from .worker import Trace, die_with_parent, measure_all
        die_with_parent(fds["lifeline"])
        trace = Trace.from_env(began=(forked_at, 0.0))  # a forked child's CPU clock starts at zero
        trace.phase("fork")
        measure_all(fds["channel"], trace)
        return 0
    return _fork_running(child)


if __name__ == "__main__":
    raise SystemExit(serve(int(sys.argv[1])))
