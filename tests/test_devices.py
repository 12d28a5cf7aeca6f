"""compare --devices: one measuring process per device at a time, devices in parallel, one store.

On this CPU-only machine the scheduling runs on two CPU slots (`--devices cpu cpu` itself runs as
runner.Lanes, tested in test_lanes.py); the GPU test checks that each measuring child sees one GPU.
"""
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from test_isolation import alive
from wavemix_profile.cli import main
from wavemix_profile.run.devices import DevicePool, parse_devices
from wavemix_profile.core.results import Settings
from wavemix_profile.run.runner import run_all
from wavemix_profile.store.store import Store

NOTHING_TIMED = ("flops", "max-batch", "throughput")


def factories(tmp_path: Path) -> Path:
    """Model factories that record what their measuring child saw, or wait on each other."""
    path = tmp_path / "slot_models.py"
    path.write_text(textwrap.dedent(f"""
        import os, pathlib, time
        import torch, torch.nn as nn
        HERE = pathlib.Path({str(tmp_path)!r})

        def _model(num_classes, image_size):
            return nn.Sequential(nn.Flatten(), nn.Linear(3 * image_size * image_size, num_classes))

        def _meet(me, other):
            (HERE / me).touch()
            deadline = time.monotonic() + 240
            while not (HERE / other).exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{{me}} ran alone: the other slot never started")
                time.sleep(0.05)

        def left(*, num_classes, image_size):
            _meet("left", "right")
            return _model(num_classes, image_size)

        def right(*, num_classes, image_size):
            _meet("right", "left")
            return _model(num_classes, image_size)

        def hangs(*, num_classes, image_size):
            (HERE / "hangs.pid").write_text(str(os.getpid()))
            time.sleep(600)

        def sees(*, num_classes, image_size):
            with open(HERE / "seen.txt", "a") as fh:
                fh.write(f"{{os.environ.get('CUDA_VISIBLE_DEVICES')}} {{torch.cuda.device_count()}}\\n")
            return _model(num_classes, image_size)
    """))
    return path


@pytest.mark.slow
def test_two_cpu_slots_measure_two_models_at_once_into_one_store(tmp_path):
    models = factories(tmp_path)
    requests = [Settings(model=f"python:{models}:{name}", image_size=size, batch_size=2, num_classes=10,
                         skip=NOTHING_TIMED) for name in ("left", "right") for size in (8, 12)]
    store = Store(tmp_path / "results.jsonl")
    # Each model waits in its factory until the other has started: one slot alone would fail both.
    results = run_all(requests, store, executor=DevicePool(parse_devices(["cpu", "cpu"])))
    assert [r.error for r in results] == [None] * 4
    assert [r.params_total for r in results] == [3 * s * s * 10 + 10 for s in (8, 12)] * 2
    assert sorted(r.settings.key() for r in store.read()) == sorted(s.key() for s in requests)
    assert {r.settings.device for r in store.read()} == {"cpu"}
    # --resume with the same slots measures nothing again
    again = run_all(requests, store, resume=True, executor=DevicePool(parse_devices(["cpu", "cpu"])))
    assert again == results and len(store.read()) == 4


def test_killing_the_driver_takes_slot_processes_and_their_children_along(tmp_path):
    models = factories(tmp_path)
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "wavemix_profile", "compare", "--devices", "cpu", "cpu",
                               "--models", f"python:{models}:hangs", "python:factories:tiny_cnn", "--image-sizes", "8",
                               "--batch-size", "2", "--num-classes", "10", "--skip", *NOTHING_TIMED, "--quiet",
                               "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    store = Store(out / "results.jsonl")
    while not ((tmp_path / "hangs.pid").exists() and store.read()) and time.monotonic() < deadline:
        time.sleep(0.2)
    child = int((tmp_path / "hangs.pid").read_text())
    assert [r.settings.model for r in store.read()] == ["python:factories:tiny_cnn"]  # the other slot's result
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 30
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child), "the measuring child outlived the killed driver"


@pytest.mark.parametrize("devices, message", [
    (["cuda:0", "cuda:0"], "--devices names cuda:0 twice; a GPU runs one measurement at a time, name each once"),
    (["cpu", "cuda:0"], "--devices takes cuda:N entries, `all`, or cpu repeated, not mixed: got cpu cuda:0"),
])
def test_bad_devices_are_refused_in_one_line(tmp_path, capsys, devices, message):
    assert main(["compare", "--devices", *devices, "--models", "ResNet-18", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert not (tmp_path / "out").exists()


def test_devices_and_ray_or_device_together_are_refused(tmp_path, capsys):
    assert main(["compare", "--devices", "cpu", "--device", "cpu", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: --device and --devices both say where to measure; give one"
    assert main(["compare", "--devices", "cpu", "--ray", "--out", str(tmp_path)]) == 2
    assert "give one (Ray schedules GPUs itself)" in capsys.readouterr().err


@pytest.mark.gpu
def test_each_gpu_slot_child_sees_only_its_own_gpu(tmp_path):
    models = factories(tmp_path)
    slots = parse_devices(["all"])
    requests = [Settings(model=f"python:{models}:sees", image_size=size, batch_size=2, num_classes=10,
                         device="cuda", skip=NOTHING_TIMED) for size in range(8, 8 + 2 * len(slots))]
    results = run_all(requests, Store(tmp_path / "results.jsonl"), executor=DevicePool(slots))
    assert all(r.ok for r in results), [r.error for r in results]
    assert {r.environment.device_name for r in results} == {torch.cuda.get_device_name(0)}
    seen = [line.split() for line in (tmp_path / "seen.txt").read_text().splitlines()]
    assert {count for _, count in seen} == {"1"}  # never more than one GPU in a measuring child
    assert {visible for visible, _ in seen} <= {slot.visible for slot in slots}
