"""Run each measurement in its own fresh process.

An out-of-memory error, a CUDA error, a crash or allocator fragmentation in one model never
reaches another: each child starts with a clean device, and a child that dies becomes an error
Result with its cause while the run goes on.
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
from typing import Callable

from .results import Result, Settings, result_from_dict, to_dict
from .worker import STAGE_PREFIX


def run_isolated(settings: Settings, *, on_stage: Callable[[str], None] | None = None) -> Result:
    """Measure in a child process; always returns a Result (an error one if the child died)."""
    from .measure import error_result
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wavemix-profile-") as tmp:
        settings_path, result_path = os.path.join(tmp, "settings.json"), os.path.join(tmp, "result.json")
        with open(settings_path, "w", encoding="utf-8") as fh:
            json.dump(to_dict(settings), fh)
        stderr_path = os.path.join(tmp, "stderr.txt")
        with open(stderr_path, "w+", encoding="utf-8") as err:
            proc = subprocess.Popen([sys.executable, "-m", "wavemix_profile.worker", settings_path, result_path],
                                    stdout=subprocess.PIPE, stderr=err, text=True)
            try:
                for line in proc.stdout:
                    if line.startswith(STAGE_PREFIX) and on_stage:
                        on_stage(line[len(STAGE_PREFIX):].strip())
                code = proc.wait()
            except BaseException:  # Ctrl-C or the parent being stopped: take the child with us
                proc.kill()
                raise
            err.seek(0)
            tail = deque((ln.strip() for ln in err if ln.strip()), maxlen=1)
        if os.path.exists(result_path):
            with open(result_path, encoding="utf-8") as fh:
                return result_from_dict(json.load(fh))
    cause = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    detail = f": {tail[0][:300]}" if tail else ""
    return error_result(settings, f"measuring process {cause}{detail}", time.perf_counter() - began)
