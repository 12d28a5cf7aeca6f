"""Signals: a run stopped by Ctrl-C, SIGTERM or SIGKILL leaves no process and no temporary file behind."""
import os
import signal
import subprocess
import sys
import time

import pytest

from test_isolation import alive

SLEEPER = ["compare", "--models", "python:factories:tiny_cnn", "python:factories:sleeps", "--image-sizes", "16",
           "--batch-size", "2", "--num-classes", "10", "--skip", "flops", "max-batch", "throughput"]


def start_sleeper(tmp_path):
    """`compare` with a first model that stores a result and a second whose forward sleeps 600 s;
    returns the CLI process and the pid of the sleeping child, once the first result is stored and
    the second model is built (the two run in parallel lanes: either may come first)."""
    pid_file, scratch, store = tmp_path / "pids.txt", tmp_path / "tmp", tmp_path / "out" / "results.jsonl"
    scratch.mkdir()
    env = {**os.environ, "WAVEMIX_TEST_PID_FILE": str(pid_file), "TMPDIR": str(scratch)}
    proc = subprocess.Popen([sys.executable, "-m", "wavemix_profile", *SLEEPER, "--out", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240  # a bound for a broken run only
    while not (pid_file.exists() and store.exists() and store.read_bytes().count(b"\n") == 1):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(f"the first result was not stored while the second model sleeps: {proc.communicate()}")
        time.sleep(0.05)
    return proc, int(pid_file.read_text().split()[0]), scratch


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


@pytest.mark.parametrize("sig, code, again", [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, False),
                                              (signal.SIGINT, 130, True)])
def test_sigterm_or_ctrl_c_ends_with_one_line_and_takes_the_child_along(tmp_path, sig, code, again):
    proc, child, scratch = start_sleeper(tmp_path)
    server = forking_server(proc, child)
    proc.send_signal(sig)
    while again and proc.poll() is None:  # Ctrl-C pressed again and again while the run shuts down
        proc.send_signal(sig)
        time.sleep(0.001)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert stderr.strip().splitlines() == ["interrupted; 1 result stored, rerun with --resume"]
    assert gone_within(child, 10), "the measuring child outlived its parent"
    assert gone_within(server, 10), "the fork server outlived its run"
    assert list(scratch.glob("wavemix-profile*")) == [], "temporary files left behind"
    assert (tmp_path / "out" / "results.jsonl").read_text().count("\n") == 1


def test_sigkill_of_the_parent_takes_the_child_and_the_fork_server_along(tmp_path):
    proc, child, _ = start_sleeper(tmp_path)
    server = forking_server(proc, child)
    proc.kill()
    proc.communicate(timeout=60)
    assert gone_within(child, 10), "the measuring child outlived its SIGKILLed parent"
    assert gone_within(server, 10), "the fork server outlived its SIGKILLed run"


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def forking_server(proc, child: int) -> int:
    """The run's fork server, which forked `child`: a process of the run's own, not the run."""
    server = parent_of(child)
    assert server != proc.pid and parent_of(server) == proc.pid, "the child was forked by the run's fork server"
    return server


def test_a_stop_inside_a_held_block_is_raised_when_the_block_ends():
    """The runner appends a record and counts it inside held_stops(): a Ctrl-C between the two would
    make the closing line say one result fewer than the store holds (seen under load)."""
    from wavemix_profile.cli import _STOPS, _on_stop
    from wavemix_profile.core.errors import held_stops
    previous = {sig: signal.signal(sig, _on_stop) for sig in _STOPS}
    done = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with held_stops():
                os.kill(os.getpid(), signal.SIGINT)  # its handler runs here, in the block
                for _ in range(1000):                # bytecodes enough for Python to run it
                    pass
                done.append("the block's work")
        assert done == ["the block's work"]
        with pytest.raises(KeyboardInterrupt):       # outside a block: at once
            _on_stop(signal.SIGINT, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
