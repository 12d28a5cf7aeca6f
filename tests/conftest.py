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
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
