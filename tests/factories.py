"""Module-level model factories for python:MODULE:FACTORY specs in tests (children import them)."""
import atexit
import os
import signal
import sys
import time

import torch.nn as nn


def tiny_cnn(*, num_classes: int, image_size: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def linear_probe(*, num_classes: int, image_size: int) -> nn.Module:
    """Flatten + one bias-free Linear: memory that can be computed by hand."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * image_size * image_size, num_classes, bias=False))


def raises(*, num_classes: int, image_size: int) -> nn.Module:
    raise RuntimeError("factory refused to build")


def dies(*, num_classes: int, image_size: int) -> nn.Module:
    os.kill(os.getpid(), signal.SIGKILL)


def dies_at_16(*, num_classes: int, image_size: int) -> nn.Module:
    if image_size == 16:
        os.kill(os.getpid(), signal.SIGKILL)
    return tiny_cnn(num_classes=num_classes, image_size=image_size)


class _Forward(nn.Module):
    """tiny_cnn with something run in forward: a user model's misbehaviour, reproduced."""

    def __init__(self, num_classes: int, action):
        super().__init__()
        self.net = tiny_cnn(num_classes=num_classes, image_size=0)
        self.action = action

    def forward(self, x):
        self.action()
        return self.net(x)


def prints_without_newline(*, num_classes: int, image_size: int) -> nn.Module:
    return _Forward(num_classes, lambda: print("hi", end="", flush=True))


def prints_protocol_lookalikes(*, num_classes: int, image_size: int) -> nn.Module:
    """What the old stdout protocol parsed: now only model output."""
    return _Forward(num_classes, lambda: print('@@result 0\n@@stage probe:garbage\n{"request": 0, "kind": "started"}',
                                               flush=True))


def exits_cleanly(*, num_classes: int, image_size: int) -> nn.Module:
    return _Forward(num_classes, lambda: sys.exit(0))


def hard_exits(*, num_classes: int, image_size: int) -> nn.Module:
    """os._exit(0): the process ends at once, reporting nothing."""
    _record_pid()
    return _Forward(num_classes, lambda: os._exit(0))


def exits_3_after_all(*, num_classes: int, image_size: int) -> nn.Module:
    """Measures fine, then the process exits 3 after the worker is done."""
    atexit.register(os._exit, 3)
    return tiny_cnn(num_classes=num_classes, image_size=image_size)


def sleeps(*, num_classes: int, image_size: int) -> nn.Module:
    """A forward that sleeps for 600 s, after writing this process's pid where the test says."""
    _record_pid()
    return _Forward(num_classes, lambda: time.sleep(600))


def wrong_classes(*, num_classes: int, image_size: int) -> nn.Module:
    return tiny_cnn(num_classes=7, image_size=image_size)


def slow_tiny_cnn(*, num_classes: int, image_size: int) -> nn.Module:
    """tiny_cnn that takes 1.5 s to build: long enough for two runs to overlap."""
    _record_pid()
    time.sleep(1.5)
    return tiny_cnn(num_classes=num_classes, image_size=image_size)


def _record_pid() -> None:
    path = os.environ.get("WAVEMIX_TEST_PID_FILE")
    if path:
        with open(path, "a") as fh:
            fh.write(f"{os.getpid()}\n")


def dies_first_time(*, num_classes: int, image_size: int) -> nn.Module:
    """SIGKILLed (as by the OOM killer) the first time, fine after: WAVEMIX_TEST_MARKER remembers."""
    marker = os.environ["WAVEMIX_TEST_MARKER"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return tiny_cnn(num_classes=num_classes, image_size=image_size)


class _FailsAbove(nn.Module):
    """tiny_cnn that refuses batches above 32: a model with a bug at larger batches."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.net = tiny_cnn(num_classes=num_classes, image_size=0)

    def forward(self, x):
        if x.shape[0] > 32:
            raise RuntimeError(f"cannot take {x.shape[0]} images")
        return self.net(x)


def fails_above_32(*, num_classes: int, image_size: int) -> nn.Module:
    return _FailsAbove(num_classes)


def reports_process(*, num_classes: int, image_size: int) -> nn.Module:
    """tiny_cnn, after appending this process's pid, parent, session, folder, first sys.path entry and
    torch threads as a JSON line to
    the file WAVEMIX_TEST_PROCESS_FILE names: how the measuring process was started. "parent": what
    /proc shows of its parent (the fork server, if one forked it): its own parent, session, command
    line and the target of each file descriptor it holds."""
    import json
    import torch
    parent = os.getppid()
    with open(f"/proc/{parent}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    with open(f"/proc/{parent}/cmdline", "rb") as fh:
        cmdline = [arg.decode() for arg in fh.read().split(b"\0")[:-1]]
    fds = {}
    for fd in os.listdir(f"/proc/{parent}/fd"):
        try:
            fds[int(fd)] = os.readlink(f"/proc/{parent}/fd/{fd}")
        except FileNotFoundError:  # closed meanwhile
            pass
    with open(os.environ["WAVEMIX_TEST_PROCESS_FILE"], "a") as fh:
        fh.write(json.dumps({"pid": os.getpid(), "ppid": parent, "sid": os.getsid(0), "cwd": os.getcwd(),
                             "path0": sys.path[0],
                             "threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
                             "parent": {"ppid": int(fields[1]), "sid": int(fields[3]), "cmdline": cmdline,
                                        "fds": fds}}) + "\n")
    return tiny_cnn(num_classes=num_classes, image_size=image_size)


_STARTED: list = []  # what this process's models started, once per process


def popens_a_sleeper(*, num_classes: int, image_size: int) -> nn.Module:
    """A forward that starts `sleep 1000` (once per process) and appends its pid to
    WAVEMIX_TEST_PID_FILE: a model whose processes would outlive the run."""
    import subprocess

    def start() -> None:
        if not _STARTED:
            _STARTED.append(subprocess.Popen(["sleep", "1000"]).pid)
            with open(os.environ["WAVEMIX_TEST_PID_FILE"], "a") as fh:
                fh.write(f"{_STARTED[0]}\n")
    return _Forward(num_classes, start)


def forks_in_forward(*, num_classes: int, image_size: int) -> nn.Module:
    """A forward that forks (once per process) a process which keeps every pipe of the measuring child
    open and waits until killed, after appending its pid to WAVEMIX_TEST_PID_FILE."""
    def fork() -> None:
        if _STARTED:
            return
        _STARTED.append(os.fork())
        if _STARTED[0] == 0:
            with open(os.environ["WAVEMIX_TEST_PID_FILE"], "a") as fh:
                fh.write(f"{os.getpid()}\n")
            while True:
                signal.pause()
    return _Forward(num_classes, fork)


def waits_for_release(*, num_classes: int, image_size: int) -> nn.Module:
    """tiny_cnn, built once the file WAVEMIX_TEST_RELEASE exists, after appending this process's pid to
    WAVEMIX_TEST_PID_FILE: a measurement the test lets finish when it chooses."""
    _record_pid()
    while not os.path.exists(os.environ["WAVEMIX_TEST_RELEASE"]):
        time.sleep(0.01)
    return tiny_cnn(num_classes=num_classes, image_size=image_size)


_PREBUILT: dict = {}   # copies_an_instance's models, built on real tensors the first time


def copies_an_instance(*, num_classes: int, image_size: int) -> nn.Module:
    """A copy of a model built beforehand (a pretrained model's pattern). Its real weights cannot be
    copied under fake tensors: torch logs that failure's traceback before the estimator falls back."""
    import copy
    if num_classes not in _PREBUILT:  # the measurement's first build runs on real tensors
        _PREBUILT[num_classes] = tiny_cnn(num_classes=num_classes, image_size=image_size)
    return copy.deepcopy(_PREBUILT[num_classes])
