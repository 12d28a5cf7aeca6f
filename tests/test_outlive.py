"""Nothing a model starts outlives its measurement, a stopped child dies with a SIGKILLed parent, a
grandchild holding the pipes cannot stall the run, and a paused run keeps what its children finished."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from test_isolation import alive, pids, quick
from test_signals import gone_within, parent_of
from waiting import BOUND_S, wait_for
from wavemix_profile.run.forkserver import FORK_SERVER_ENV
from wavemix_profile.run.isolation import iter_isolated
from wavemix_profile.run.runner import Sequential, run_all
from wavemix_profile.store.store import Store



def kill_all(pid_list) -> None:
    """SIGKILL what a failed test left: each pid, if it is still a process this test started."""
    for pid in pid_list:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                command = fh.read()
            ours = any(word in command for word in (b"sleep", b"python", b"wavemix"))
            if ours and alive(pid):
                os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass


@pytest.fixture
def pid_file(reported):
    path = reported("WAVEMIX_TEST_PID_FILE")
    yield path
    kill_all(pids(path))


@pytest.mark.parametrize("fork_server", ["1", "0"])
def test_a_process_the_model_starts_is_ended_with_its_measurement(tmp_path, pid_file, monkeypatch, fork_server):
    if fork_server == "0":
        monkeypatch.setenv(FORK_SERVER_ENV, fork_server)
    else:  # the default: the worker's own server, kept (set, the variable would start a server of its own)
        monkeypatch.delenv(FORK_SERVER_ENV, raising=False)
    results = run_all([quick("python:factories:popens_a_sleeper", 8), quick("python:factories:popens_a_sleeper", 12)],
                      Store(tmp_path / "results.jsonl"), executor=Sequential())
    assert [r.ok for r in results] == [True, True]
    assert len(pids(pid_file)) == 1, "one child measured both sizes; its model started one sleeper"
    sleeper = pids(pid_file).pop()
    assert gone_within(sleeper, BOUND_S), "the sleeper the model started outlived the run"  # SIGKILLed, ending


def test_a_grandchild_holding_the_pipes_does_not_stall_the_run(pid_file):
    landed, done = [], threading.Event()

    def run() -> None:
        landed.extend(iter_isolated([quick("python:factories:forks_in_forward", 8)], timeout_s=None))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    wait_for(lambda: pids(pid_file), "the model forked")
    grandchild = pids(pid_file).pop()
    try:
        # The grandchild waits until killed: the run must end on the child's Finished, not on end-of-file.
        assert done.wait(BOUND_S), "the run waited for the grandchild to let go of the pipes"
        assert [r.ok for r in landed] == [True]
        assert gone_within(grandchild, BOUND_S), "the grandchild outlived the measurement"
    except BaseException:
        kill_all([grandchild])
        done.wait(BOUND_S)
        raise


def start_compare(tmp_path, *extra, env=None):
    """`compare` of waits_for_release (params only) in a process of its own; returns it once the
    measuring child is building the model, and that child's pid."""
    pid_file, release = tmp_path / "pids.txt", tmp_path / "release"
    env = {**os.environ, "WAVEMIX_TEST_PID_FILE": str(pid_file), "WAVEMIX_TEST_RELEASE": str(release), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "wavemix_profile", "compare", "--models",
                             "python:factories:waits_for_release", "--image-sizes", "8", "--batch-size", "2",
                             "--num-classes", "10", "--skip", "flops", "memory", "max-batch", "throughput",
                             "--out", str(tmp_path / "out"), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: pids(pid_file), "the measuring child started")
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc, pids(pid_file).pop(), release


@pytest.mark.slow
def test_a_run_paused_past_its_timeout_keeps_what_its_child_finished_meanwhile(tmp_path):
    proc, child, release = start_compare(tmp_path, "--timeout", "3")
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        release.touch()
        wait_for(lambda: not alive(child), "the child finished while its parent was stopped")
        time.sleep(max(0.0, stopped + 4 - time.monotonic()))  # the pause outlasts --timeout 3: the point
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    _, stderr = proc.communicate(timeout=BOUND_S)
    assert proc.returncode == 0, stderr
    stored = (tmp_path / "out" / "results.jsonl").read_text()
    assert stored.count("\n") == 1 and '"error":null' in stored, stored


@pytest.mark.parametrize("fork_server", ["1", "0"])
def test_a_stopped_child_dies_with_its_sigkilled_parent(tmp_path, fork_server):
    proc, child, _ = start_compare(tmp_path, env={FORK_SERVER_ENV: fork_server})
    server = parent_of(child)
    assert (server != proc.pid) == (fork_server == "1")
    try:
        os.killpg(child, signal.SIGSTOP)  # as another lane's timing stops it (time_alone.TimeAlone)
        wait_for(lambda: state(child) == "T", "the child stopped")
        proc.kill()
        proc.communicate(timeout=BOUND_S)
        assert gone_within(child, BOUND_S), "the stopped child outlived its SIGKILLed parent"
        assert server == proc.pid or gone_within(server, BOUND_S), "the fork server outlived its run"
    except BaseException:
        kill_all([child] if server == proc.pid else [child, server])
        raise


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]
