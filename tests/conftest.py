import atexit
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from wavemix_profile.run.host import usable_cores

# `make test` runs the tests on as many xdist workers as the machine has cores (2 here): each worker, and
# every process it starts, gets its share of the cores' threads, as a run's own lanes do (runner.py:
# usable_cores() // lanes). torch's default of a thread per core in every process oversubscribed the
# cores, and waiting threads spin: the suite spent 14 CPU-minutes where 9 do. Set in the workers only (a
# run without xdist has the cores to itself, torch's default), before torch's first import, and never
# over a user's own OMP_NUM_THREADS.
WORKERS = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
if WORKERS:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // int(WORKERS))))

import torch  # noqa: E402

TESTS = os.path.dirname(__file__)
sys.path.insert(0, TESTS)  # `factories` for python:factories:NAME specs, here and in child processes
# the width rich gives tables in every test, run here or in a child (a pipe's default); one value also
# keeps the environment, and so the fork server that in_process.run_cli reuses, the same from test to test
os.environ["COLUMNS"] = "80"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))
# The files factories.py's models report to (their processes, how each was started, a marker that
# outlives one), named once for the session: a run keeps its fork server while the environment stays the
# same, and a variable set anew for each test started two servers a test. `reported` empties one for a test.
REPORTED = Path(tempfile.mkdtemp(prefix="wavemix-profile-tests-"))
atexit.register(shutil.rmtree, REPORTED, ignore_errors=True)
for variable, name in (("WAVEMIX_TEST_PID_FILE", "pids.txt"), ("WAVEMIX_TEST_PROCESS_FILE", "processes.jsonl"),
                       ("WAVEMIX_TEST_MARKER", "marker")):
    os.environ[variable] = str(REPORTED / name)


def pytest_collection_modifyitems(config, items):
    # the long tests first (the rehearsal and the doc test's README.md, the longest, at the very front), so
    # that under xdist none starts last on one worker while the other idles
    slow = sorted((item for item in items if "slow" in item.keywords), key=lambda item: item.path.name, reverse=True)
    items[:] = slow + [item for item in items if "slow" not in item.keywords]
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# pytest names the running test and its phase in the environment (PYTEST_CURRENT_TEST), and a run keeps
# its fork server only while the environment it would hand a fresh child stays the same (run/forkserver.py):
# every test that measured in this process started a server of its own, 2 CPU-s of imports. Fixtures and
# tests run without the name, so one server serves a worker's tests while nothing else in it changes.
@contextmanager
def _unnamed():
    name = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        yield
    finally:
        if name is not None:
            os.environ["PYTEST_CURRENT_TEST"] = name


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    with _unnamed():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    with _unnamed():
        yield


@pytest.fixture
def reported():
    """reported(VARIABLE): the file the session's VARIABLE names (WAVEMIX_TEST_PID_FILE, ...), emptied for
    this test."""
    def emptied(variable: str) -> Path:
        path = Path(os.environ[variable])
        path.unlink(missing_ok=True)
        return path
    return emptied
