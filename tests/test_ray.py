"""compare --ray on a real local Ray cluster (one per test session, 2 CPUs): no mocks.

A measurement is a Ray task in a fresh worker that runs it in a child; the driver alone stores. A
worker killed mid-task is retried once, then becomes an error row; the store never holds a duplicate.
"""
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the test extra installs ray; the GPU machine's wheel set has none")

from test_isolation import alive  # noqa: E402
from wavemix_profile.cli import main  # noqa: E402
from wavemix_profile.measure.measure import measure  # noqa: E402
from wavemix_profile.run.ray_runner import WORKER_RETRIES, RayExecutor, for_gpu_types  # noqa: E402
from wavemix_profile.core.results import Settings  # noqa: E402
from wavemix_profile.run.runner import run_all  # noqa: E402
from wavemix_profile.store.store import Store  # noqa: E402

NO_TIMING = ("max-batch", "throughput")
# every test here on one xdist worker (make test runs --dist loadgroup), so one cluster starts, not two
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="session")
def cluster():
    """One local cluster for the session; its address lets a driver in another process join it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def hanging_factory(tmp_path: Path, hang_tries: int) -> str:
    """A python:FILE:FACTORY spec whose first `hang_tries` tries sleep in the factory after writing
    the measuring child's pid to tries.txt; later tries build a model."""
    (tmp_path / "hangs.py").write_text(textwrap.dedent(f"""
        import os, pathlib, time
        import torch.nn as nn
        TRIES = pathlib.Path({str(tmp_path / "tries.txt")!r})

        def model(*, num_classes, image_size):
            done = len(TRIES.read_text().splitlines()) if TRIES.exists() else 0
            with open(TRIES, "a") as fh:
                fh.write(f"{{os.getpid()}}\\n")
            if done < {hang_tries}:
                time.sleep(600)
            return nn.Sequential(nn.Flatten(), nn.Linear(3 * image_size * image_size, num_classes))
    """))
    return f"python:{tmp_path / 'hangs.py'}:model"


def ray_worker_above(pid: int) -> int:
    """The Ray worker process (its title starts "ray::") the measuring child `pid` descends from:
    its parent, or the parent of the fork server that forked it."""
    while pid > 1:
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
            return pid
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    raise AssertionError("the measuring child is not below a Ray worker")


def wait_for_try(tries: Path, number: int, seconds: float = 240) -> tuple[int, int]:
    """(measuring child pid, Ray worker pid) of try `number` (1-based), once it has started."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lines = tries.read_text().splitlines() if tries.exists() else []
        if len(lines) >= number:
            child = int(lines[number - 1].split()[0])
            return child, ray_worker_above(child)
        time.sleep(0.2)
    raise AssertionError(f"try {number} never started")


def kill_worker(worker: int) -> None:
    os.kill(worker, 9)


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not alive(pid)


def in_background(target):
    box = {}
    thread = threading.Thread(target=lambda: box.update(value=target()), daemon=True)
    thread.start()
    return thread, box


def test_cpu_measurements_through_ray_equal_in_process_ones(cluster, tmp_path):
    requests = [Settings(model="python:factories:tiny_cnn", image_size=16, batch_size=2, num_classes=10, skip=NO_TIMING),
                Settings(model="2D FNet-64/5", image_size=32, batch_size=4, num_classes=10, skip=NO_TIMING)]
    store = Store(tmp_path / "results.jsonl")
    with RayExecutor() as executor:
        executor.plan(requests)
        results = run_all(requests, store, executor=executor)
    for request, result in zip(requests, results):
        local = measure(request)
        assert result.ok, result.error
        assert result.settings == request
        assert (result.params_total, result.params_trainable) == (local.params_total, local.params_trainable)
        assert result.flops == local.flops and result.flops.forward_macs_per_image > 0
        assert result.memory == local.memory and result.memory.method == "cpu-estimate"
        assert result.environment.host == local.environment.host
    assert sorted(r.settings.key() for r in store.read()) == sorted(s.key() for s in requests)


def test_a_worker_killed_mid_task_is_retried_once_and_stored_once(cluster, tmp_path):
    spec = hanging_factory(tmp_path, hang_tries=1)
    store = Store(tmp_path / "results.jsonl")
    request = Settings(model=spec, image_size=8, batch_size=2, num_classes=10, skip=("flops", *NO_TIMING))
    with RayExecutor() as executor:
        executor.plan([request])
        thread, box = in_background(lambda: run_all([request], store, executor=executor))
        child, worker = wait_for_try(tmp_path / "tries.txt", 1)
        kill_worker(worker)
        thread.join(300)
    assert not thread.is_alive()
    [result] = box["value"]
    assert result.ok, result.error
    assert result.params_total == 3 * 8 * 8 * 10 + 10
    assert gone_within(child, 30), "the killed worker's measuring child lived on"
    assert len(set((tmp_path / "tries.txt").read_text().split())) == 2  # a second child built the model
    assert [r.settings.key() for r in store.read()] == [request.key()]


def test_a_worker_killed_on_every_try_is_one_error_row(cluster, tmp_path):
    spec = hanging_factory(tmp_path, hang_tries=WORKER_RETRIES + 1)
    store = Store(tmp_path / "results.jsonl")
    request = Settings(model=spec, image_size=8, batch_size=2, num_classes=10, skip=("flops", *NO_TIMING))
    with RayExecutor() as executor:
        executor.plan([request])
        thread, box = in_background(lambda: run_all([request], store, executor=executor))
        for number in range(1, WORKER_RETRIES + 2):
            kill_worker(wait_for_try(tmp_path / "tries.txt", number)[1])
        thread.join(300)
    assert not thread.is_alive()
    [result] = box["value"]
    assert result.error.startswith(f"Ray worker died mid-task, {WORKER_RETRIES + 1} tries: WorkerCrashedError")
    assert [(r.settings.key(), r.ok) for r in store.read()] == [(request.key(), False)]


def test_driver_sigkill_then_resume_loses_only_what_was_in_flight(cluster, tmp_path):
    spec = hanging_factory(tmp_path, hang_tries=1)
    out = tmp_path / "out"
    args = ["compare", "--ray", cluster, "--models", "python:factories:tiny_cnn", spec, "--image-sizes", "8",
            "--batch-size", "2", "--num-classes", "10", "--skip", "flops", "max-batch", "throughput", "--quiet",
            "--out", str(out)]
    driver = subprocess.Popen([sys.executable, "-m", "wavemix_profile", *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    child, worker = wait_for_try(tmp_path / "tries.txt", 1)
    store = Store(out / "results.jsonl")
    deadline = time.monotonic() + 240
    while not store.read() and time.monotonic() < deadline:  # tiny_cnn lands while the other hangs
        time.sleep(0.2)
    driver.kill()
    driver.wait()
    assert [r.settings.model for r in store.read()] == ["python:factories:tiny_cnn"]
    assert gone_within(worker, 60) and gone_within(child, 30), "the dead driver's task lived on"
    assert main([*args, "--resume"]) == 0
    assert sorted(r.settings.model for r in store.read()) == sorted(["python:factories:tiny_cnn", spec])
    assert all(r.ok for r in store.read())


def test_gpu_types_the_cluster_lacks_are_refused_before_anything_is_stored(cluster, tmp_path, capsys):
    code = main(["compare", "--ray", cluster, "--gpu-types", "H100", "--models", "ResNet-18", "--out", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: --gpu-types H100: not in the Ray cluster; its GPU types: none"
    assert not (tmp_path / "results.jsonl").exists()


def test_each_gpu_type_is_its_own_measurement():
    request = Settings(model="ResNet-18", image_size=32)
    expanded = for_gpu_types([request], ["H100", "A100"])
    assert [(s.device, s.gpu_type) for s in expanded] == [("cuda", "H100"), ("cuda", "A100")]
    assert len({s.key() for s in expanded}) == 2
    assert request.key() == Settings(model="ResNet-18", image_size=32, gpu_type=None).key()
    assert "gpu_type" not in request.key()  # keys of records stored before the field are unchanged


def test_without_ray_the_cli_says_which_extra_to_install():
    script = ("import sys; sys.modules['ray'] = None\n"  # what an environment without ray gives
              "import wavemix_profile, wavemix_profile.cli, wavemix_profile.run.runner, wavemix_profile.run.devices\n"
              "from wavemix_profile.cli import main\n"
              "sys.exit(main(['compare', '--ray', '--models', 'ResNet-18']))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --ray needs Ray, which is not installed: pip install 'wavemix-profile[ray]'"


def answers_not_as_ray():
    """A local TCP server that answers anything with an HTTP/1.1 error, as a web server would; its address."""
    import socket
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with server:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    return server, f"127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("where", ["refused", "not ray"])
def test_an_address_where_no_ray_cluster_answers_is_one_line_exit_2(tmp_path, where):
    server, address = answers_not_as_ray() if where == "not ray" else (None, "127.0.0.1:1")
    try:
        done = subprocess.run([sys.executable, "-m", "wavemix_profile", "compare", "--ray", address, "--models",
                               "ResNet-18", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                              timeout=120)  # ray.init alone retries for many minutes
    finally:
        if server is not None:
            server.close()
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Ray cluster" in done.stderr and address in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()
