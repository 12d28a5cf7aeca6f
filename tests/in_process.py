"""The command line run in the test's own process: `main(args)` with its stdout and stderr captured,
returned as `subprocess.run` returns a finished command (returncode, stdout, stderr).

What it saves is the start of a fresh interpreter: importing torch in the parent (`python -m
wavemix_profile` does on every call) and starting a fork server, whose imports take seconds on
2 cores. The server a first call starts (run/forkserver.py) is kept for later calls while the
environment stays the same, as within one run; every measurement still happens in a child process of
its own. Tests of what only a separate process shows (its exit on a signal, the entry
point, output that torch's loggers write to the real stderr) run `python -m wavemix_profile` instead.
"""
from __future__ import annotations

import io
import os
import subprocess
from contextlib import redirect_stderr, redirect_stdout

from wavemix_profile.cli import main


def run_cli(*args: str, cwd=None, columns: int | None = None) -> subprocess.CompletedProcess:
    """`wavemix-profile ARGS` in this process, in `cwd` if given, with COLUMNS=`columns` if given (the
    width rich gives tables; conftest.py sets 80 for every test)."""
    out, err = io.StringIO(), io.StringIO()
    here, width = os.getcwd(), os.environ.get("COLUMNS")
    if columns:
        os.environ["COLUMNS"] = str(columns)
    try:
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:  # argparse's usage errors and --help
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(here)
        if width is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = width
    return subprocess.CompletedProcess(["wavemix-profile", *map(str, args)], code, out.getvalue(), err.getvalue())
