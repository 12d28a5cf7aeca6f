"""Each measurement in its own process; a dying child is an error record; SIGKILL loses at most one."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from wavemix_profile.models import UnknownModelError
from wavemix_profile.run.forkserver import FORK_SERVER_ENV
from wavemix_profile.run.isolation import iter_isolated, run_isolated
from wavemix_profile.core.results import Settings
from wavemix_profile.run.runner import Sequential, run_all
from wavemix_profile.store.store import Store
from wavemix_profile.run.worker import TRACE_ENV

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


SIZES = (8, 12, 16, 20, 24)
# quick(tiny_cnn, size) for each of SIZES, stored one by one, in a process of its own
DRIVER = textwrap.dedent(f"""
    import sys
    from wavemix_profile.core.results import Settings
    from wavemix_profile.run.runner import Sequential, run_all
    from wavemix_profile.store.store import Store
    requests = [Settings(model="python:factories:tiny_cnn", image_size=s, batch_size=2, num_classes=10,
                         skip={QUICK!r}) for s in {SIZES!r}]
    run_all(requests, Store(sys.argv[1]), resume=True, executor=Sequential())
""")


@pytest.mark.slow
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
    # resumed here, on this worker's fork server: what the killed process stored is read back, not redone
    run_all([quick("python:factories:tiny_cnn", s) for s in SIZES], Store(path), resume=True, executor=Sequential())
    sizes = [r.settings.image_size for r in Store(path).read()]
    assert sorted(sizes) == list(SIZES)
    assert sizes[:stored_before] == list(SIZES[:stored_before])


def test_a_model_whose_child_dies_at_one_size_still_gets_its_other_sizes(tmp_path):
    store = Store(tmp_path / "results.jsonl")
    results = run_all([quick("python:factories:dies_at_16", s) for s in (8, 16, 24)], store, executor=Sequential())
    assert [r.ok for r in results] == [True, False, True]
    assert "SIGKILL" in results[1].error and results[1].settings.image_size == 16
    assert [r.settings.image_size for r in store.read()] == [8, 16, 24]


# --- a model cannot hang the run or corrupt the parent/child protocol ---------------------------

def pids(path) -> set[int]:
    """The processes that built a recording factory (one process may build it more than once)."""
    return {int(line) for line in path.read_text().split()} if path.exists() else set()


@pytest.fixture
def pid_file(reported):
    return reported("WAVEMIX_TEST_PID_FILE")


@pytest.mark.parametrize("factory", ["prints_without_newline", "prints_protocol_lookalikes"])
def test_what_a_model_prints_is_never_taken_for_a_message(tmp_path, factory):
    store = Store(tmp_path / "results.jsonl")
    results = run_all([quick(f"python:factories:{factory}", 8), quick(f"python:factories:{factory}", 12),
                       quick("python:factories:tiny_cnn")], store)
    assert [r.error for r in results] == [None, None, None]
    assert sorted(r.settings.image_size for r in store.read()) == [8, 12, 16]  # two models: lanes land in any order
    assert results[0].memory.peak_train_bytes > 0


def test_sys_exit_in_forward_is_that_request_s_error_and_the_child_goes_on(tmp_path, pid_file):
    store = Store(tmp_path / "results.jsonl")
    results = run_all([quick("python:factories:exits_cleanly", s) for s in (8, 12)]
                      + [quick("python:factories:tiny_cnn")], store)
    assert [r.error for r in results[:2]] == ["model code called sys.exit(0) during the measurement"] * 2
    assert results[2].ok and len(store.read()) == 3


def test_a_child_that_exits_0_without_results_gives_error_rows_and_is_not_restarted(tmp_path, pid_file):
    store = Store(tmp_path / "results.jsonl")
    results = run_all([quick("python:factories:hard_exits", s) for s in (8, 12, 16)]
                      + [quick("python:factories:tiny_cnn")], store, executor=Sequential())
    assert [r.error for r in results[:3]] == ["measuring process exited 0 without a result"] * 3
    assert len(pids(pid_file)) == 1, "one child for the model, not one per size and never a loop"
    assert results[3].ok
    assert [r.settings.image_size for r in store.read()] == [8, 12, 16, 16]


def test_a_child_that_exits_non_zero_after_delivering_everything_loses_nothing(tmp_path):
    store = Store(tmp_path / "results.jsonl")
    results = run_all([quick("python:factories:exits_3_after_all", s) for s in (8, 12)], store, executor=Sequential())
    assert [r.ok for r in results] == [True, True]
    assert [r.settings.image_size for r in store.read()] == [8, 12]


def test_a_hanging_forward_is_killed_at_the_timeout_and_the_run_goes_on(tmp_path, pid_file):
    store = Store(tmp_path / "results.jsonl")
    began = time.monotonic()
    results = run_all([quick("python:factories:sleeps", 8), quick("python:factories:sleeps", 12),
                       quick("python:factories:tiny_cnn")], store, timeout_s=4)
    assert time.monotonic() - began < 120
    assert [r.error for r in results[:2]] == [
        "timed out after 4 s (--timeout); the measuring process was killed"] * 2
    assert results[2].ok
    assert len(pids(pid_file)) == 2, "each timed-out size had its own child"
    for pid in pids(pid_file):
        assert not alive(pid), f"timed-out child {pid} still runs"


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_resume_measures_stored_errors_again_unless_kept(tmp_path):
    store = Store(tmp_path / "results.jsonl")
    flaky = quick("python:factories:dies")
    run_all([flaky, quick("python:factories:tiny_cnn")], store)
    assert len(store.read()) == 2
    run_all([flaky, quick("python:factories:tiny_cnn")], store, resume=True, keep_errors=True)
    assert len(store.read()) == 2, "--keep-errors: the stored error stands"
    again = run_all([flaky, quick("python:factories:tiny_cnn")], store, resume=True)
    assert [r.settings.model for r in store.read()] == ["python:factories:dies", "python:factories:tiny_cnn",
                                                        "python:factories:dies"]
    assert "SIGKILL" in again[0].error and again[1].ok


# --- the fork server: warm children, the same results ---------------------------------------------

def records(path) -> list[dict]:
    import json
    return [json.loads(line) for line in path.read_text().splitlines()]


def processes(path) -> list[dict]:
    """The processes that built reports_process, in order (a measurement builds it more than once)."""
    return list({r["pid"]: r for r in reversed(records(path))}.values())[::-1]


@pytest.fixture
def process_file(reported):
    return reported("WAVEMIX_TEST_PROCESS_FILE")


def test_children_are_forked_by_one_server_in_sessions_of_their_own_with_fresh_threads(process_file, monkeypatch):
    for size in (8, 12):  # two runs in one environment: one server
        assert run_isolated(quick("python:factories:reports_process", size)).ok
    monkeypatch.setenv(FORK_SERVER_ENV, "0")
    assert run_isolated(quick("python:factories:reports_process", 16)).ok
    first, second, spawned = processes(process_file)
    assert first["ppid"] == second["ppid"] != os.getpid(), "forked by the same server, not by this process"
    assert spawned["ppid"] == os.getpid(), "FORK_SERVER_ENV=0: a fresh interpreter, started here"
    assert all(p["sid"] == p["pid"] for p in (first, second, spawned)), "each child leads its own session"
    assert (first["threads"], first["interop"]) == (spawned["threads"], spawned["interop"])


def test_the_command_line_forks_one_server_from_itself_and_a_process_with_torch_starts_one_afresh(
        tmp_path, process_file):
    """The command line has not imported torch when it starts its server: it imports torch and forks the
    server from itself, one import for both. The server is then as a fresh interpreter would be: a session
    of its own, stdin from /dev/null, and no file of the run's open but stdout, stderr and its sockets
    and pipes (not `held`, which the run inherited). Checking a torchvision model imports torch._dynamo,
    which sets TORCHINDUCTOR_CACHE_DIR in the parent's environment: that once made such a run start a
    second server and wait for its imports. This process has imported torch: its server is a fresh
    interpreter, as any process's that may have run torch ops."""
    held, trace = tmp_path / "held.txt", tmp_path / "trace.jsonl"
    with open(held, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "wavemix_profile", "compare", "--models", "torchvision:resnet18",
                                 "python:factories:reports_process", "--image-sizes", "16", "--skip", *QUICK,
                                 "--out", str(tmp_path / "out")], pass_fds=(fh.fileno(),), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, TRACE_ENV: str(trace)})
        stderr = proc.communicate(timeout=300)[1]
    assert proc.returncode == 0, stderr
    phases = [r["phase"] for r in records(trace)]
    # forked: the python: model's check (loaded in a child, never here), then the two measurements
    assert phases.count("fork server start-up and imports") == 1 and phases.count("fork") == 3, phases
    server = processes(process_file)[-1]["parent"]
    assert server["ppid"] == proc.pid and server["cmdline"] == [sys.executable, "-m", "wavemix_profile",
                                                                 *proc.args[3:]], "forked from the command line"
    assert server["sid"] == processes(process_file)[-1]["ppid"], "the server leads a session of its own"
    assert server["fds"]["0"] == os.devnull
    assert str(held) not in server["fds"].values()
    assert all(fd in ("1", "2") or target.startswith(("socket:", "pipe:")) for fd, target in server["fds"].items()
               if fd != "0"), server["fds"]

    process_file.unlink()
    assert run_isolated(quick("python:factories:reports_process")).ok
    server = processes(process_file)[-1]["parent"]
    assert server["ppid"] == os.getpid() and server["cmdline"][1:3] == ["-m", "wavemix_profile.run.forkserver"]


def test_a_changed_folder_keeps_the_server_and_the_child_starts_there_as_python_m_would(
        tmp_path, process_file, monkeypatch):
    """The folder travels with each request: a child forked after the run moved starts in the new folder,
    that folder first on its sys.path (where the server had the one it started in), as a fresh
    `python -m wavemix_profile.run.worker` there would; the model file of a python: spec is found there."""
    start = os.getcwd()
    assert run_isolated(quick("python:factories:reports_process", 8)).ok
    (tmp_path / "mine.py").write_text("from factories import reports_process as make\n")
    monkeypatch.chdir(tmp_path)
    assert run_isolated(quick("python:mine.py:make", 12)).ok
    here, moved = processes(process_file)
    assert here["ppid"] == moved["ppid"], "one server for both"
    assert (here["cwd"], here["path0"]) == (start, start)
    assert (moved["cwd"], moved["path0"]) == (str(tmp_path), str(tmp_path))


def test_a_changed_environment_gets_a_new_server(process_file, monkeypatch):
    assert run_isolated(quick("python:factories:reports_process", 8)).ok
    monkeypatch.setenv("WAVEMIX_TEST_SOMETHING", "else")
    assert run_isolated(quick("python:factories:reports_process", 12)).ok
    first, second = processes(process_file)
    assert first["ppid"] != second["ppid"]
    assert not alive(first["ppid"]) or gone_soon(first["ppid"]), "the old server exits once its children have"


def gone_soon(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


MEASURED = ("params_total", "params_trainable", "flops", "memory")


def test_results_are_the_same_with_and_without_the_fork_server(monkeypatch):
    request = Settings(model="python:factories:tiny_cnn", image_size=16, batch_size=8, num_classes=10,
                       skip=("throughput",))
    forked = run_isolated(request)
    monkeypatch.setenv(FORK_SERVER_ENV, "0")
    spawned = run_isolated(request)
    assert forked.ok and spawned.ok
    for field in MEASURED:
        assert getattr(forked, field) == getattr(spawned, field), field
    assert forked.flops.forward_macs_per_image > 0 and forked.flops.fvcore_macs_per_image > 0
    for mode in ("train", "infer"):
        a, b = getattr(forked, f"max_batch_{mode}"), getattr(spawned, f"max_batch_{mode}")
        assert (a.max_batch, a.probes, a.predicted_device_bytes) == (b.max_batch, b.probes, b.predicted_device_bytes)
        assert a.max_batch > 8


def test_the_trace_says_where_each_process_spent_its_time(tmp_path, monkeypatch):
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv(TRACE_ENV, str(trace))
    assert [r.ok for r in iter_isolated([quick("python:factories:tiny_cnn", s) for s in (8, 12)])] == [True, True]
    phases = records(trace)
    assert [r["phase"] for r in phases] == ["fork server start-up and imports", "fork"] + ["set-up", "params", "memory"] * 2
    assert [r["image_size"] for r in phases[2:]] == [8, 8, 8, 12, 12, 12]
    assert all(r["wall_s"] >= 0 and r["cpu_s"] >= 0 for r in phases)
    assert phases[0]["cpu_s"] > 0.5, "the server's imports (torch among them) take CPU time"


