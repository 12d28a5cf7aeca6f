"""Run each model in its own fresh process.

An out-of-memory error, a CUDA error, a crash or allocator fragmentation in one model never
reaches another: each model's child starts with a clean device and measures that model's image
sizes one after another. Each result comes back as soon as it is written; a child that dies
becomes an error Result with its cause for the request in flight, and the model's remaining
requests go on in a new child.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from typing import Callable, Iterator, Sequence

from .results import Result, Settings, result_from_dict, to_dict
from .worker import RESULT_PREFIX, STAGE_PREFIX


def run_isolated(settings: Settings, *, on_stage: Callable[[str], None] | None = None) -> Result:
    """Measure one request in a child process; always returns a Result."""
    return next(iter_isolated([settings], on_stage=on_stage))


def iter_isolated(requests: Sequence[Settings], *,
                  on_stage: Callable[[str], None] | None = None) -> Iterator[Result]:
    """Yield one Result per request, in order, as each lands; one child runs them all unless it dies."""
    remaining = list(requests)
    while remaining:
        done = 0
        for result in _one_child(remaining, on_stage):
            done += 1
            yield result
        remaining = remaining[done:]


def _one_child(requests: list[Settings], on_stage) -> Iterator[Result]:
    """Results from one child; if it dies, an error Result for the request in flight ends it."""
    from .measure import error_result
    began, landed = time.perf_counter(), 0
    with tempfile.TemporaryDirectory(prefix="wavemix-profile-") as tmp:
        settings_path = os.path.join(tmp, "settings.json")
        with open(settings_path, "w", encoding="utf-8") as fh:
            json.dump([to_dict(s) for s in requests], fh)
        with open(os.path.join(tmp, "stderr.txt"), "w+", encoding="utf-8") as err:
            proc = subprocess.Popen([sys.executable, "-m", "wavemix_profile.worker", settings_path, tmp],
                                    stdout=subprocess.PIPE, stderr=err, text=True)
            try:
                for line in proc.stdout:
                    if line.startswith(RESULT_PREFIX):
                        with open(os.path.join(tmp, line[len(RESULT_PREFIX):].strip() + ".json"), encoding="utf-8") as fh:
                            yield result_from_dict(json.load(fh))
                        began, landed = time.perf_counter(), landed + 1
                    elif line.startswith(STAGE_PREFIX) and on_stage:
                        on_stage(line[len(STAGE_PREFIX):].strip())
                code = proc.wait()
            finally:  # Ctrl-C, the parent being stopped or the caller giving up: take the child along
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            err.seek(0)
            tail = deque((ln.strip() for ln in err if ln.strip()), maxlen=1)
    if code != 0:
        cause = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        detail = f": {tail[0][:300]}" if tail else ""
        yield error_result(requests[landed], f"measuring process {cause}{detail}", time.perf_counter() - began)
