import os
import sys

import pytest
import torch

TESTS = os.path.dirname(__file__)
sys.path.insert(0, TESTS)  # `factories` for python:factories:NAME specs, here and in child processes
# the width rich gives tables in every test, run here or in a child (a pipe's default); one value also
# keeps the environment, and so the fork server that in_process.run_cli reuses, the same from test to test
os.environ["COLUMNS"] = "80"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))


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
