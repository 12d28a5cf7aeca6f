"""Each measurement in its own process; a dying child is an error record; SIGKILL loses at most one."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from wavemix_profile.models import UnknownModelError
from wavemix_profile.isolation import run_isolated
from wavemix_profile.results import Settings
from wavemix_profile.runner import run_all
from wavemix_profile.store import Store

QUICK = ("flops", "max-batch", "throughput")


def quick(model, size=16):
    return Settings(model=model, image_size=size, batch_size=2, num_classes=10, skip=QUICK)


def test_child_exception_becomes_error_result():
    result = run_isolated(quick("python:factories:raises"))
    assert not result.ok
    assert result.error == "RuntimeError: factory refused to build"


def test_child_killed_by_signal_becomes_error_result_and_run_goes_on(tmp_path):
    store = Store(tmp_path / "results.jsonl")
    results = run_all([quick("python:factories:dies"), quick("python:factories:tiny_cnn")], store)
    assert results[0].error.startswith("measuring process killed by SIGKILL")
    assert results[1].ok and results[1].params_total == 3 * 8 * 9 + 8 + 16 + 8 * 10 + 10
    assert [r.settings.model for r in store.read()] == ["python:factories:dies", "python:factories:tiny_cnn"]


def test_bad_request_stores_nothing(tmp_path):
    store = Store(tmp_path / "results.jsonl")
    with pytest.raises(UnknownModelError):
        run_all([quick("python:factories:tiny_cnn"), quick("ResNet-19")], store)
    assert not store.path.exists()


DRIVER = textwrap.dedent("""
    import sys
    from wavemix_profile.results import Settings
    from wavemix_profile.runner import run_all
    from wavemix_profile.store import Store
    sizes = [8, 12, 16, 20, 24]
    requests = [Settings(model="python:factories:tiny_cnn", image_size=s, batch_size=2, num_classes=10,
                         skip=("flops", "max-batch", "throughput")) for s in sizes]
    run_all(requests, Store(sys.argv[1]), resume=True)
""")


def test_sigkill_mid_run_then_resume_loses_nothing_and_duplicates_nothing(tmp_path):
    path = tmp_path / "results.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(path)], env=os.environ.copy())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not path.exists() or path.read_bytes().count(b"\n") < 2):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored_before = path.read_bytes().count(b"\n")
    assert 2 <= stored_before < 5, "the kill should land mid-run"
    subprocess.run([sys.executable, "-c", DRIVER, str(path)], check=True, env=os.environ.copy())
    sizes = [r.settings.image_size for r in Store(path).read()]
    assert sorted(sizes) == [8, 12, 16, 20, 24]
    assert sizes[:stored_before] == [8, 12, 16, 20, 24][:stored_before]


def test_a_model_whose_child_dies_at_one_size_still_gets_its_other_sizes(tmp_path):
    store = Store(tmp_path / "results.jsonl")
    results = run_all([quick("python:factories:dies_at_16", s) for s in (8, 16, 24)], store)
    assert [r.ok for r in results] == [True, False, True]
    assert "SIGKILL" in results[1].error and results[1].settings.image_size == 16
    assert [r.settings.image_size for r in store.read()] == [8, 16, 24]
