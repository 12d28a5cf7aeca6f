"""A user's model file runs in measuring children only: whatever its module-level code does (change
folder, exit, fail, hang) the run's own process goes on, and a file that cannot give a model is one
line of bad input (exit 2), with nothing stored."""
import os
import subprocess
import sys
import textwrap

import pytest
from in_process import run_cli

from wavemix_profile.core.errors import BadInputError
from wavemix_profile.core.results import Settings
from wavemix_profile.run.runner import run_all
from wavemix_profile.store.store import Store

QUICK = ("flops", "memory", "max-batch", "throughput")
FACTORY = """
import torch.nn as nn

def make(*, num_classes, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * image_size * image_size, num_classes))
"""


def model_file(folder, body: str, factory: str = FACTORY) -> str:
    """A model file whose module-level code appends its process id to loaded.txt, then runs `body`."""
    path = folder / "model.py"
    path.write_text(f"import os, sys, time\nwith open({str(folder / 'loaded.txt')!r}, 'a') as fh:\n"
                    f"    fh.write(f'{{os.getpid()}}\\n')\n" + textwrap.dedent(body) + factory)
    return str(path)


def loaded_by(folder) -> set[int]:
    path = folder / "loaded.txt"
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


REFUSED = [
    ("", "def make(:\n", "SyntaxError"),
    ("raise RuntimeError('needs a GPU to import')\n", FACTORY, "RuntimeError while loading: needs a GPU to import"),
    ("", "make = 3\n", "is a int, not callable"),
    ("", "def make(size):\n    pass\n", "must accept num_classes= and image_size="),
    ("sys.exit(3)\n", FACTORY, "called sys.exit(3) while loading"),
    ("os._exit(0)\n", FACTORY, "measuring process exited 0 without a result"),
    ("time.sleep(3600)\n", FACTORY, "timed out after 2 s (--timeout)"),
]


@pytest.mark.parametrize("body, factory, why", REFUSED)
def test_a_model_file_that_gives_no_model_is_refused_without_running_here(tmp_path, body, factory, why):
    spec = f"python:{model_file(tmp_path, body, factory)}:make"
    store = Store(tmp_path / "results.jsonl")
    with pytest.raises(BadInputError, match="model") as caught:
        run_all([Settings(model=spec, image_size=8, batch_size=2, num_classes=10, skip=QUICK)], store,
                timeout_s=2 if "timed out" in why else 300)
    assert why in str(caught.value) and "\n" not in str(caught.value)
    assert os.getpid() not in loaded_by(tmp_path), "the model file ran in this process"
    assert not store.path.exists()


def cli(*args, cwd):
    return run_cli(*args, cwd=cwd)


def test_a_model_file_that_changes_folder_runs_in_children_and_the_store_lands_in_out(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    model_file(tmp_path, f"os.chdir({str(elsewhere)!r})\n")
    run = subprocess.Popen([sys.executable, "-m", "wavemix_profile", "compare", "--models", "python:model.py:make",
                            "--image-sizes", "8", "--batch-size", "2", "--num-classes", "10", "--skip", *QUICK,
                            "--out", "out"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert loaded_by(tmp_path) and run.pid not in loaded_by(tmp_path), "the model file ran in the run's process"
    assert Store(tmp_path / "out" / "results.jsonl").read()[0].params_total == 3 * 8 * 8 * 10 + 10
    assert not (elsewhere / "out").exists()


@pytest.mark.parametrize("body, factory, why", [REFUSED[0], REFUSED[4]])
def test_the_cli_refuses_such_a_file_in_one_line_exit_2(tmp_path, body, factory, why):
    model_file(tmp_path, body, factory)
    run = cli("compare", "--models", "python:model.py:make", "--image-sizes", "8", "--out", "out", cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: cannot ") and why in run.stderr
    assert not (tmp_path / "out").exists()


def test_profile_which_runs_the_model_here_writes_where_out_said_before_the_model_moved(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    model_file(tmp_path, f"os.chdir({str(elsewhere)!r})\n")
    run = cli("profile", "python:model.py:make", "--image-size", "8", "--batch-size", "2", "--num-classes", "10",
              "--out", "out", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert [p.suffix for p in sorted((tmp_path / "out").iterdir())] == [".json", ".md"]
    assert not (elsewhere / "out").exists()
