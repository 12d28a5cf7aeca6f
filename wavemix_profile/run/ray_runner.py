"""`compare --ray [ADDRESS]`: each measurement a Ray task, results streamed back to the driver's store.

Each (model, image size, GPU kind) is one task in a fresh Ray worker process (`max_calls=1`) asking
for one whole GPU (`num_gpus=1`; with `--gpu-types`, Ray's `accelerator_type` resource too), so
two measurements never share a GPU. A CPU task asks for one CPU when it times nothing, and for a
whole node's CPUs (the smallest node's count) when it times throughput, so nothing Ray schedules
runs beside it. Inside the task the measurement runs as it does locally, in a child process
(`isolation.run_isolated`: its time limit, a crash or an out-of-memory kill of the model becomes an
error row), and the task returns the Result as the store's dict form. Only the driver appends to the
store (runner.py), under its claims, so `--resume` and concurrent runs work as they do locally.

A worker that dies mid-task is retried once (`max_retries=1`). The model runs in the worker's child,
so a model that crashes is an error row from the child and never kills the worker: a dead worker is
the infrastructure failing (a node lost or preempted, the worker killed from outside), which a
second try on another worker usually survives. If the retry dies too, the row is an error naming
Ray's cause. A task is returned to the driver once whatever its tries, so there is never a
duplicate record.

Ray is imported only here, and only when a run asks for it.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import time
from typing import Optional, Sequence

from .isolation import DEFAULT_TIMEOUT_S
from ..core.results import Result, Settings

INSTALL_HINT = "pip install 'wavemix-profile[ray]'"
LOCAL = None          # --ray with no address: a local cluster started for the run
WORKER_RETRIES = 1    # tries after a worker or node dies mid-task
_TYPE_PREFIX = "accelerator_type:"
RAY_CONNECT_S = 30.0  # --ray ADDRESS: how long the cluster has to answer
# An HTTP/2 client's preface and an empty SETTINGS frame: a gRPC server answers with a SETTINGS frame.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_HTTP2_SETTINGS = 4


def import_ray():
    """The ray module, or BadInputError naming the extra to install."""
    try:
        import ray
    except ImportError:
        from ..core.errors import BadInputError
        raise BadInputError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def check_reachable(address: str, timeout_s: float = RAY_CONNECT_S) -> None:
    """BadInputError unless a gRPC server (a Ray head's GCS; a Ray client server for ray://) answers at
    `address` (host:port) within timeout_s. Anything else ("auto" with no RAY_ADDRESS, a name Ray
    resolves itself) is left to ray.init."""
    from ..core.errors import BadInputError
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as conn:
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            conn.sendall(_HTTP2_PREFACE)
            answer = conn.recv(9)
    except OSError as exc:
        raise BadInputError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc or 'timed out'}; "
                            "give the address `ray start --head` printed, auto, or no address for a local "
                            "cluster") from None
    if len(answer) < 9 or answer[3] != _HTTP2_SETTINGS:
        raise BadInputError(f"{address} answers, but not as a Ray cluster (no gRPC server there); give the address "
                            "`ray start --head` printed, auto, or no address for a local cluster")


def measure_task(settings_data: dict, timeout_s: Optional[float]) -> dict:
    """The body of a Ray task: one measurement in a child of this worker, returned as the store's dict."""
    from .isolation import run_isolated
    from ..core.results import settings_from_dict, to_dict
    return to_dict(run_isolated(settings_from_dict(settings_data), timeout_s=timeout_s))


def for_gpu_types(requests: Sequence[Settings], gpu_types: Sequence[str]) -> list[Settings]:
    """Each request once per GPU kind, interleaved so that every kind has work from the start."""
    return [dataclasses.replace(s, device="cuda", gpu_type=kind) for s in requests for kind in gpu_types]


class RayExecutor:
    """An Executor (runner.py) on a Ray cluster; a context manager that connects and disconnects.

    address: None starts a local cluster for the run (stopped at the end), "auto" the cluster the
    environment names (RAY_ADDRESS, or one `ray start` made here), anything else is passed to
    ray.init. When this process is already connected (a test session's cluster), that one is used."""

    def __init__(self, address: Optional[str] = LOCAL, timeout_s: Optional[float] = DEFAULT_TIMEOUT_S):
        self.address, self.timeout_s = address, timeout_s
        self._ray = import_ray()
        self._owned = False
        self._remote = None
        self._in_flight: dict = {}   # ObjectRef -> Settings
        self._slots = 1

    def __enter__(self) -> "RayExecutor":
        ray = self._ray
        if not ray.is_initialized():
            if self.address is not LOCAL:  # ray.init retries an address that does not answer for many minutes
                check_reachable(os.environ.get("RAY_ADDRESS", "") if self.address == "auto" else self.address)
            try:
                ray.init(address="local" if self.address is LOCAL else self.address, include_dashboard=False,
                         log_to_driver=False, logging_level="ERROR")
            except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
                from ..core.errors import BadInputError
                first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
                raise BadInputError(f"cannot connect to the Ray cluster at {self.address}: {first}"[:500]) from None
            self._owned = True
        self._remote = ray.remote(max_calls=1, max_retries=WORKER_RETRIES)(measure_task)
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        if self._owned:
            self._ray.shutdown()

    # What the cluster holds --------------------------------------------------------------------
    def resources(self) -> dict[str, float]:
        return dict(self._ray.cluster_resources())

    def gpu_types(self) -> list[str]:
        """Ray's accelerator types present in the cluster (e.g. "H100", "A100")."""
        return sorted(k[len(_TYPE_PREFIX):] for k in self.resources() if k.startswith(_TYPE_PREFIX))

    def _node_cpus(self) -> int:
        counts = [n["Resources"].get("CPU", 0) for n in self._ray.nodes() if n.get("Alive")]
        return max(1, int(min((c for c in counts if c), default=1)))

    def _options(self, settings: Settings) -> dict:
        if settings.device != "cpu":
            options = {"num_gpus": 1, "num_cpus": 1}
            if settings.gpu_type:
                options["accelerator_type"] = settings.gpu_type
            return options
        return {"num_cpus": 1 if "throughput" in settings.skip else self._node_cpus()}

    def plan(self, requests: Sequence[Settings]) -> None:
        """Check that the cluster can run `requests` (BadInputError naming what it has) and size the
        number of tasks in flight to what runs at once, so that claims are taken when work starts."""
        from ..core.errors import BadInputError
        have = self.resources()
        kinds = sorted({s.gpu_type for s in requests if s.gpu_type})
        missing = [k for k in kinds if _TYPE_PREFIX + k not in have]
        if missing:
            present = ", ".join(self.gpu_types()) or "none"
            raise BadInputError(f"--gpu-types {' '.join(missing)}: not in the Ray cluster; its GPU types: {present}")
        if any(s.device != "cpu" for s in requests) and have.get("GPU", 0) < 1:
            raise BadInputError("the Ray cluster has no GPU; use --device cpu, or a cluster with GPUs")
        cpu_tasks = [s for s in requests if s.device == "cpu"]
        per_task = max((self._options(s)["num_cpus"] for s in cpu_tasks), default=1)
        self._slots = max(1, int(have.get("GPU", 0)) + (int(have.get("CPU", 0) // per_task) if cpu_tasks else 0))

    # Executor ---------------------------------------------------------------------------------
    def validate(self, settings: Settings) -> None:
        """Everything isolation.check_request checks except that this machine has the device: the cluster has."""
        from ..core.errors import BadInputError
        from .isolation import check_request
        if settings.device != "cpu" and settings.target_gpu is not None:
            raise BadInputError("--target-gpu names the GPU a CPU prediction is for; a GPU measures itself")
        if settings.device not in ("cpu", "cuda"):
            raise BadInputError(f"with --ray the device is cpu or cuda (Ray picks the GPU), not {settings.device!r}")
        check_request(dataclasses.replace(settings, device="cpu", gpu_type=None), self.timeout_s)

    def groups(self, requests: list[Settings]) -> list[list[Settings]]:
        return [[s] for s in requests]  # one task per measurement

    def free(self) -> int:
        return max(0, self._slots - len(self._in_flight))

    def busy(self) -> bool:
        return bool(self._in_flight)

    def submit(self, group: list[Settings], on_event) -> None:
        from ..core.results import to_dict
        for settings in group:
            ref = self._remote.options(**self._options(settings)).remote(to_dict(settings), self.timeout_s)
            self._in_flight[ref] = settings

    def next_result(self, timeout_s: Optional[float] = None) -> Optional[Result]:
        ray = self._ray
        if not self._in_flight:
            return None
        ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=timeout_s)
        if not ready:
            return None
        settings = self._in_flight.pop(ready[0])
        try:
            data = ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            from ..measure.measure import error_result
            return error_result(settings, _describe(exc))
        from ..core.results import result_from_dict
        return result_from_dict(data)

    def close(self) -> None:
        for ref in list(self._in_flight):
            try:
                self._ray.cancel(ref, force=True)  # kills the worker; its measuring child dies with it
            except Exception:  # already finished or the cluster is gone: nothing left to stop
                pass
        self._in_flight.clear()


def _describe(exc: BaseException) -> str:
    """One line for a task Ray could not finish."""
    ray = import_ray()
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return f"Ray worker died mid-task, {1 + WORKER_RETRIES} tries: {type(exc).__name__}: {first}"[:500]
    return f"Ray task failed: {type(exc).__name__}: {first}"[:500]
