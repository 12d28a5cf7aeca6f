"""Lanes: several models' measuring children at once on the CPU, every timing alone.

The untimed stages of two models overlap; while one child times, the other is stopped (SIGSTOP to
its process group) and no child starts. Checked with real processes: busy loops whose progress is
read from files, and real measurements whose models log each forward pass with its process and time.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from waiting import wait_for

from wavemix_profile.run.isolation import TimeAlone
from wavemix_profile.core.results import Settings
from wavemix_profile.run.runner import Lanes, Sequential, default_cpu_lanes, local_executor, run_all
from wavemix_profile.store.store import Store

# Each count is written whole and renamed over the last, so that a process stopped mid-write
# never leaves an empty file behind.
COUNTER = ("import os, sys, time\nn = 0\nwhile True:\n    n += 1\n"
           "    open(sys.argv[1] + '.part', 'w').write(str(n))\n    os.replace(sys.argv[1] + '.part', sys.argv[1])\n"
           "    time.sleep(0.005)\n")


def _count(path: Path) -> int:
    for _ in range(50):  # before the first count
        text = path.read_text() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{path} never counted")


def _counter(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", COUNTER, str(path)], start_new_session=True)


def test_a_child_that_times_stops_every_other_until_it_ends(tmp_path):
    alone = TimeAlone()
    timer, other = (alone.start(lambda name=name: _counter(tmp_path / name)) for name in ("timer", "other"))
    counts = lambda name: _count(tmp_path / name)  # noqa: E731
    try:
        wait_for(lambda: min(counts("timer"), counts("other")) >= 5, "both children count")
        alone.begin(timer.pid)
        wait_for(lambda: _state(other.pid) == "T", "the other child stopped")
        frozen, timed = counts("other"), counts("timer")
        wait_for(lambda: counts("timer") > timed + 20, "the timing child runs on")
        assert counts("other") == frozen and _state(other.pid) == "T", "the other child ran while one timed"
        assert alone.stopped_s(other.pid) > 0 and alone.stopped_s(timer.pid) == 0
        alone.end(timer.pid)
        wait_for(lambda: counts("other") > frozen + 10, "the other child continued")
        stopped = alone.stopped_s(other.pid)
        wait_for(lambda: counts("other") > frozen + 20, "the other child runs on")
        assert alone.stopped_s(other.pid) == stopped, "the stop no longer grows"
    finally:
        alone.kill_all()
        for proc in (timer, other):
            proc.wait(timeout=10)
    assert (timer.returncode, other.returncode) == (-signal.SIGKILL, -signal.SIGKILL)


def test_no_child_starts_while_one_times_and_none_after_the_run_stops(tmp_path):
    alone = TimeAlone()
    timer = alone.start(lambda: _counter(tmp_path / "timer"))
    alone.begin(timer.pid)
    started = []
    import threading
    late = threading.Thread(target=lambda: started.append(alone.start(lambda: _counter(tmp_path / "late"))))
    late.start()
    time.sleep(0.5)
    assert started == [] and not (tmp_path / "late").exists()
    alone.end(timer.pid)
    late.join(timeout=10)
    assert len(started) == 1 and _count(tmp_path / "late") >= 1
    alone.kill_all()
    for proc in (timer, *started):
        proc.wait(timeout=10)
    from wavemix_profile.run.isolation import RunClosed
    try:
        alone.start(lambda: _counter(tmp_path / "never"))
    except RunClosed:
        pass
    else:
        raise AssertionError("a child started after kill_all")
    assert not (tmp_path / "never").exists()


def logged_models(tmp_path: Path) -> Path:
    """Two small models that log each forward pass: pid, time, fake tensors or real, batch, training."""
    path = tmp_path / "logged.py"
    path.write_text(textwrap.dedent(f"""
        import os, time
        import torch.nn as nn
        LOG = {str(tmp_path / "forwards.log")!r}

        class Logged(nn.Module):
            def __init__(self, width, num_classes):
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                          nn.Flatten(), nn.Linear(width, num_classes))

            def forward(self, x):
                from torch._subclasses.fake_tensor import FakeTensor
                with open(LOG, "a") as fh:
                    fh.write(f"{{os.getpid()}} {{time.monotonic()}} {{int(isinstance(x, FakeTensor))}} {{x.shape[0]}} "
                             f"{{int(self.training)}}\\n")
                return self.body(x)

        def narrow(*, num_classes, image_size):
            return Logged(8, num_classes)

        def wide(*, num_classes, image_size):
            return Logged(16, num_classes)
    """))
    return path


TIMED_BATCH = 3  # no other stage runs the model on real tensors at this batch


@pytest.mark.slow
def test_two_lanes_overlap_untimed_stages_and_time_alone(tmp_path):
    models = logged_models(tmp_path)
    requests = [Settings(model=f"python:{models}:{name}", image_size=16, batch_size=4, num_classes=10,
                         throughput_batch_size=TIMED_BATCH, warmup_steps=1, timed_iterations=1, repeats=5,
                         min_block_s=0.05) for name in ("narrow", "wide")]
    store = Store(tmp_path / "results.jsonl")
    results = run_all(requests, store, executor=Lanes(2))
    assert [r.error for r in results] == [None, None]
    assert all(r.throughput.train_images_per_s > 0 and r.max_batch_train.max_batch > 0 for r in results)
    log = [line.split() for line in (tmp_path / "forwards.log").read_text().splitlines()]
    calls = [(int(pid), float(t), fake == "1", int(batch), training == "1") for pid, t, fake, batch, training in log]
    pids = sorted({c[0] for c in calls})
    assert len(pids) == 2
    spans = {pid: (min(t for p, t, *_ in calls if p == pid), max(t for p, t, *_ in calls if p == pid)) for pid in pids}
    assert spans[pids[0]][0] < spans[pids[1]][1] and spans[pids[1]][0] < spans[pids[0]][1], "the lanes never overlapped"
    for pid in pids:
        throughput = [(t, training) for p, t, fake, batch, training in calls
                      if p == pid and not fake and batch == TIMED_BATCH]
        timed = [t for t, _ in throughput]
        # train and infer: the warm-up step (timed: its pace sizes the blocks), then five blocks of at least
        # one step each (exactly one on a machine so busy that a step outlasts min_block_s)
        assert len(timed) >= 2 * (1 + 5)
        inside = [c for c in calls if c[0] != pid and min(timed) <= c[1] <= max(timed)]
        assert inside == [], f"{len(inside)} forward passes of another model ran while {pid} timed"


def test_the_default_is_lanes_for_several_models_on_a_cpu_with_cores_to_spare():
    cpu = [Settings(model=name, image_size=32) for name in ("ResNet-18", "WaveMix-16/5")]
    lanes = default_cpu_lanes()
    assert lanes == min(2, len(os.sched_getaffinity(0)))
    assert isinstance(local_executor(cpu), Lanes if lanes > 1 else Sequential)
    assert isinstance(local_executor(cpu[:1]), Sequential)  # one request: nothing to overlap
    assert isinstance(local_executor([Settings(model="ResNet-18", image_size=32, device="cuda")] + cpu), Sequential)


def slow_models(tmp_path: Path) -> Path:
    """`timer` times slowly and says when it begins; `busy` spends its untimed stages sleeping."""
    path = tmp_path / "slow.py"
    path.write_text(textwrap.dedent(f"""
        import os, pathlib, time
        import torch.nn as nn
        HERE = pathlib.Path({str(tmp_path)!r})

        def mark(name):  # whole or absent: a reader never sees the file empty
            part = HERE / f".{{name}}.{{os.getpid()}}"
            part.write_text(str(os.getpid()))
            os.replace(part, HERE / name)

        class Slow(nn.Module):
            def __init__(self, role, num_classes):
                super().__init__()
                self.role, self.linear = role, nn.Linear(3, num_classes)

            def forward(self, x):
                from torch._subclasses.fake_tensor import FakeTensor
                fake = isinstance(x, FakeTensor)
                if self.role == "busy":
                    mark("busy.pid")
                    time.sleep(0.2)
                elif not fake and x.shape[0] == {TIMED_BATCH}:
                    mark("timer.pid")
                    time.sleep(0.5)
                return self.linear(x.mean((2, 3)))

        def timer(*, num_classes, image_size):
            return Slow("timer", num_classes)

        def busy(*, num_classes, image_size):
            return Slow("busy", num_classes)
    """))
    return path


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def test_ctrl_c_while_a_lane_is_stopped_ends_every_child(tmp_path):
    models = slow_models(tmp_path)
    argv = [sys.executable, "-m", "wavemix_profile", "compare", "--devices", "cpu", "cpu", "--models",
            f"python:{models}:timer", f"python:{models}:busy", "--image-sizes", "8", "--batch-size", "2",
            "--num-classes", "10", "--throughput-batch-size", str(TIMED_BATCH), "--skip", "flops",
            "--out", str(tmp_path / "out")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (tmp_path / "timer.pid").exists() and (tmp_path / "busy.pid").exists(), "both children started")
    timer, busy = (int((tmp_path / f"{name}.pid").read_text()) for name in ("timer", "busy"))
    wait_for(lambda: _state(busy) == "T", "the busy child stopped while the other timed")  # ~7 s of timing
    assert _state(timer) in "RS"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in stderr
    for pid in (timer, busy):
        deadline = time.monotonic() + 60
        while os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{pid}") or _state(pid) == "Z", f"child {pid} outlived the run"
