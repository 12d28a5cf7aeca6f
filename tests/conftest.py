import os
import sys

import pytest
import torch

TESTS = os.path.dirname(__file__)
sys.path.insert(0, TESTS)  # `factories` for python:factories:NAME specs, here and in child processes
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
