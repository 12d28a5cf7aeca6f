"""Where `wavemix-profile compare` (what `make demo` runs) spends its time, phase by phase.

Runs `compare` in a child process with the worker's trace switched on (worker.TRACE_ENV), so every
measuring process appends the wall and CPU seconds of each phase: its start-up and imports, then
each stage of each measurement (set-up, params, flops, memory, max-batch, throughput). Then renders
the same store once more with `report`, timed alone, for the cost of rendering. Prints one table:
wall seconds (noisy on a shared machine) and CPU seconds (user + system) per phase, summed over the
measurements, with the parent's share (its start-up, validation, waiting and rendering) as the rest.

With lanes (runner.Lanes, the default for several models on a CPU with two or more cores) the
measuring processes run side by side, so their phases' wall seconds add up to more than the run's
and include time a process was stopped while another timed; the phase worker.TIMED_PHASE names is
the part no other process ran beside. CPU seconds are each phase's own cost either way.

Run from the repository root, with compare's own options (all of them, or a subset while iterating):
    .venv/bin/python benchmarks/demo_breakdown.py                       # the demo: the zoo at 32 and 64 px
    .venv/bin/python benchmarks/demo_breakdown.py --models 'WaveMix-*' ResNet-18 --image-sizes 32
Outputs go to a temporary folder (or --out DIR), never to reports/; --keep-trace FILE keeps the trace.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from wavemix_profile.run.worker import TIMED_PHASE, TRACE_ENV

COMMAND = ".venv/bin/python benchmarks/demo_breakdown.py"
ORDER = ("start-up and imports", "fork server start-up and imports", "fork", "set-up", "params", "flops", "memory", "max-batch (train)",
         "max-batch (infer)", "throughput", TIMED_PHASE)


def timed(argv: list[str], env: dict) -> tuple[float, float, int]:
    """(wall s, CPU s of the process and every descendant it waited for, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    code = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), code


def main(args: list[str]) -> int:
    keep = None
    if "--keep-trace" in args:  # this script's own option: where to leave the trace, for a closer look
        at = args.index("--keep-trace")
        keep, args = args[at + 1], args[:at] + args[at + 2:]
    with tempfile.TemporaryDirectory(prefix="demo-breakdown-") as scratch:
        out = args[args.index("--out") + 1] if "--out" in args else os.path.join(scratch, "out")
        extra = [] if "--out" in args else ["--out", out]
        trace = keep or os.path.join(scratch, "trace.jsonl")
        env = {**os.environ, TRACE_ENV: trace}
        cli = [sys.executable, "-m", "wavemix_profile"]
        wall, cpu, code = timed([*cli, "compare", *args, *extra], env)
        records = [json.loads(line) for line in Path(trace).read_text().splitlines()] if Path(trace).exists() else []
        render_wall, render_cpu, _ = timed([*cli, "report", os.path.join(out, "results.jsonl"), "--out",
                                            os.path.join(scratch, "rendered")], dict(os.environ))
    print(f"{COMMAND} {' '.join(args)}".rstrip())
    print(f"compare exited {code}; {len({r['pid'] for r in records})} measuring processes, "
          f"{len({(r['model'], r['image_size']) for r in records if r['model']})} measurements")
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for r in records:
        row = sums[r["phase"]]
        row[0] += r["wall_s"]
        row[1] += r["cpu_s"]
        row[2] += 1
    print(f"{'phase':<34}{'wall s':>9}{'CPU s':>9}{'count':>7}")
    phases = sorted(sums, key=lambda p: ORDER.index(p) if p in ORDER else len(ORDER))
    for phase in phases:
        w, c, n = sums[phase]
        print(f"{'  ' + phase:<34}{w:>9.1f}{c:>9.1f}{n:>7}")
    child_wall, child_cpu = sum(v[0] for v in sums.values()), sum(v[1] for v in sums.values())
    print(f"{'measuring processes, all phases':<34}{child_wall:>9.1f}{child_cpu:>9.1f}")
    if child_wall <= wall:  # one process at a time: the rest of the wall time is the parent's
        print(f"{'parent and the rest':<34}{wall - child_wall:>9.1f}{cpu - child_cpu:>9.1f}")
    else:
        print(f"{'parent and the rest':<34}{'(lanes)':>9}{cpu - child_cpu:>9.1f}")
    print(f"{'compare, in all':<34}{wall:>9.1f}{cpu:>9.1f}")
    print(f"{'rendering alone (report, again)':<34}{render_wall:>9.1f}{render_cpu:>9.1f}")
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
