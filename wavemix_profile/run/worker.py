"""Child-process entry point: measure a list of Settings (one model), reporting on a private pipe.

`python -m wavemix_profile.run.worker CHANNEL_FD LIFELINE_FD`, with a JSON object on stdin: the
requests, and the threads its untimed stages may use (null: all; a share of the cores when other
children run beside it: time_alone.TimeAlone); with "check": true it only loads each request's model
and says whether it can run (check_all). Every message goes to CHANNEL_FD (see protocol.py);
stdout and stderr belong to the model.
Any exception, or a SystemExit from model code, becomes the request's error Result, so the parent
gets a record for every request unless the process itself dies (a signal, the OOM killer, os._exit),
which the parent turns into one.

LIFELINE_FD is the read end of a pipe whose write end only the parent holds: when it reads
end-of-file the parent is gone (SIGKILL included), and the child kills its own process group and
session, so no measurement outlives the run that asked for it; a child stopped for another's timing
is woken by SIGCONT when its parent dies (here: PR_SET_PDEATHSIG; forked: the fork server) to see it.
The parent writes one byte on it for each
Timing(begins=True) the child sends: the go-ahead to time (protocol.py).

The fork server (forkserver.py, `python -m wavemix_profile.run.forkserver CONTROL_FD`) forks children
that run measure_all as this process would.

With TRACE_ENV set to a file name, each measuring process appends where its time went to that file:
one JSON line per phase (start-up and imports, then each measurement stage) with its wall and CPU
seconds. benchmarks/demo_breakdown.py reads it; nothing else does.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Optional

from .process_tree import end_own_tree, signal_on_parent_death
from ..core.protocol import Checked, Finished, Message, Stage, Started, Timing, encode

TRACE_ENV = "WAVEMIX_PROFILE_TRACE"
_GO = threading.Event()  # the parent's go-ahead to time: a byte on the lifeline


def die_with_parent(lifeline_fd: int) -> None:
    def watch() -> None:
        while os.read(lifeline_fd, 1024):  # a byte is a go-ahead to time; b"" means the parent's end closed
            _GO.set()
        end_own_tree()  # this child and anything it started

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def _seconds_since_start() -> Optional[float]:
    """Wall seconds since this process started (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError, IndexError):
        return None


class Trace:
    """Wall and CPU seconds of consecutive phases of this process, appended to the TRACE_ENV file
    (one short JSON line per write, so processes sharing the file do not interleave)."""

    def __init__(self, path: Optional[str], *, began: Optional[tuple[float, float]] = None):
        """began: (perf_counter, process_time) when the first phase began; default now."""
        self.path = path
        self._wall, self._cpu = began or (time.perf_counter(), time.process_time())

    @classmethod
    def from_env(cls, began: Optional[tuple[float, float]] = None) -> "Trace":
        return cls(os.environ.get(TRACE_ENV) or None, began=began)

    def mark(self) -> None:
        """The next phase starts now."""
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def phase(self, name: str, request=None, *, since_start: bool = False) -> None:
        """Record the phase that ends now; since_start: it began when the process did."""
        wall, cpu = time.perf_counter(), time.process_time()
        if self.path:
            took = _seconds_since_start() if since_start else None
            record = {"pid": os.getpid(), "phase": name,
                      "model": getattr(request, "model", None), "image_size": getattr(request, "image_size", None),
                      "wall_s": round(took if took is not None else wall - self._wall, 4),
                      "cpu_s": round(cpu if since_start else cpu - self._cpu, 4), "ended_at": round(time.time(), 3)}
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        self._wall, self._cpu = wall, cpu


def main(argv: list[str]) -> int:
    channel_fd, lifeline_fd = (int(a) for a in argv)
    signal_on_parent_death(signal.SIGCONT)  # stopped for another's timing when the parent dies: wake
    die_with_parent(lifeline_fd)
    trace = Trace.from_env()
    import importlib
    importlib.import_module("wavemix_profile.measure.measure")  # torch and the measuring code, timed as start-up
    trace.phase("start-up and imports", since_start=True)
    measure_all(channel_fd, trace)
    return 0


TIMED_PHASE = "throughput, timed alone"  # the trace's name for the part between the Timing events


def measure_all(channel_fd: int, trace: Trace) -> None:
    """Measure each request read from stdin in turn, sending its messages (Started, Stage, Probe,
    Timing, Finished) on the channel."""
    from ..measure.measure import describe_failure, error_result, measure
    from ..core.results import settings_from_dict
    channel = os.fdopen(channel_fd, "wb")
    payload = json.load(sys.stdin)
    requests = [settings_from_dict(item) for item in payload["requests"]]
    if payload.get("check"):
        return check_all(channel, requests)
    if payload.get("probe"):
        return probe_one(channel, requests, *payload["probe"])
    for index, settings in enumerate(requests):
        stage = ["set-up"]

        def send(message: Message, index: int = index) -> None:
            if isinstance(message, (Stage, Finished, Timing)):
                trace.phase(stage[0], settings)
                stage[0] = (message.name if isinstance(message, Stage) else
                            (TIMED_PHASE if message.begins else "throughput") if isinstance(message, Timing) else "")
            channel.write(encode(index, message))
            channel.flush()
            if isinstance(message, Timing) and message.begins:
                _GO.wait()  # until the parent has stopped the run's other children
                _GO.clear()
                trace.mark()  # time spent waiting for the others to stop is nobody's phase

        send(Started())
        trace.mark()
        began = time.perf_counter()
        try:
            result = measure(settings, on_event=send, untimed_threads=payload["untimed_threads"])
        except (Exception, SystemExit) as exc:  # every failure of a model becomes its row's error
            traceback.print_exc(file=sys.stderr)
            result = error_result(settings, describe_failure(exc), time.perf_counter() - began)
        send(Finished(result))


def probe_one(channel, requests, mode: str, batch: int) -> None:
    """The one request's model probed at `batch` for `mode` (measure.probe), its Probe sent; a failure
    is the traceback on stderr and a non-zero exit (isolation.probe_isolated says so)."""
    from ..measure.measure import probe
    (settings,) = requests
    channel.write(encode(0, Started()))
    channel.flush()
    channel.write(encode(0, probe(settings, mode, batch)))
    channel.flush()


def check_all(channel, requests) -> None:
    """Load each request's model here and say whether it can run (Checked): a user's model file runs
    in measuring children only, never in the run's own process (isolation.check_isolated)."""
    from ..core.errors import is_user_error
    from ..measure.measure import describe_failure, validate
    for index, settings in enumerate(requests):
        channel.write(encode(index, Started()))
        channel.flush()
        try:
            validate(settings)
            refusal = None
        except (Exception, SystemExit) as exc:  # the model file's own failure is the user's to fix
            traceback.print_exc(file=sys.stderr)
            refusal = str(exc) if is_user_error(exc) else \
                f"cannot load model {settings.model!r}: {describe_failure(exc)}"
        channel.write(encode(index, Checked(refusal)))
        channel.flush()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
