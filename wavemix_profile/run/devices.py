"""`compare --devices`: one measuring process per device at a time, the devices in parallel.

Each device is a slot. A slot takes one model's requests at a time and runs them through a slot
process started for that model, `python -m wavemix_profile.run.devices CHANNEL_FD LIFELINE_FD`, with
CUDA_VISIBLE_DEVICES naming only the slot's GPU; the slot process runs them with
`isolation.iter_isolated` (a fresh measuring child, its time limit, a death becomes an error row),
and sends every event and Result back on a private pipe (protocol.py). So the measuring child sees
one GPU, as `cuda`, and creates no context on any other: two measurements never share a GPU, and a
request keeps the key it has on one device (`device="cuda"`), so `--resume` works across runs with
any number of GPUs.

Only the driver appends to the store (runner.py), under its claims. The slot process dies with the
driver (it watches a pipe only the driver holds), and its measuring child dies with it.

CPU slots (`--devices cpu cpu`: each entry one slot) share the CPU's cores: they run as
runner.Lanes in the driver's process, which stops every other child while one times.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

from .isolation import DEFAULT_TIMEOUT_S
from ..core.protocol import Finished, ProtocolError, decode
from ..core.results import Result, Settings, settings_from_dict, to_dict

ALL = "all"


@dataclass(frozen=True)
class Slot:
    """One place a measurement runs: `device` is what requests ask for ("cpu" or "cuda"), `visible`
    the CUDA_VISIBLE_DEVICES of its processes (the GPU's index or UUID; None: unchanged)."""

    device: str
    visible: Optional[str]
    label: str


def parse_devices(entries: Sequence[str]) -> list[Slot]:
    """`--devices` as slots: `all` (every CUDA GPU), `cuda:N` (each once), or `cpu` repeated for
    parallel CPU lanes (runner.Lanes). One kind of device per run: a request's device is part of its
    key, and GPUs of different models would answer different measurements."""
    import torch
    from ..core.errors import BadInputError
    entries = list(entries)
    if entries == [ALL]:
        if not torch.cuda.is_available():
            raise BadInputError("--devices all: no CUDA device here; name devices: cuda:0 cuda:1 ..., or cpu cpu")
        entries = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if ALL in entries:
        raise BadInputError("--devices all stands alone; or name devices: cuda:0 cuda:1 ..., or cpu cpu")
    if set(entries) == {"cpu"}:
        return [Slot("cpu", None, f"cpu slot {i}") for i in range(len(entries))]
    from ..measure.measure import parse_device
    if any(not e.startswith("cuda:") for e in entries):
        raise BadInputError(f"--devices takes cuda:N entries, `all`, or cpu repeated, not mixed: got {' '.join(entries)}")
    repeated = sorted({e for e in entries if entries.count(e) > 1})
    if repeated:
        raise BadInputError(f"--devices names {repeated[0]} twice; a GPU runs one measurement at a time, name each once")
    indices = [parse_device(e).index for e in entries]
    names = {torch.cuda.get_device_name(i) for i in indices}
    if len(names) > 1:
        raise BadInputError(f"--devices mixes GPU models ({', '.join(sorted(names))}); their figures answer different "
                            "questions: run compare once per model of GPU (--device cuda:N), or --ray --gpu-types")
    return [Slot("cuda", _visible_id(i), f"cuda:{i}") for i in indices]


def _visible_id(index: int) -> str:
    """What CUDA_VISIBLE_DEVICES must say for torch's device `index` to be the only one seen: the
    entry of the current CUDA_VISIBLE_DEVICES at that position, else the index itself."""
    current = os.environ.get("CUDA_VISIBLE_DEVICES")
    if current:
        return current.split(",")[index].strip()
    return str(index)


class DevicePool:
    """An Executor (runner.py) over slots: one model's slot process per slot at a time."""

    def __init__(self, slots: Sequence[Slot], timeout_s: Optional[float] = DEFAULT_TIMEOUT_S):
        self.slots = list(slots)
        self.timeout_s = timeout_s
        self._idle = list(self.slots)
        self._landed: queue.Queue = queue.Queue()  # (kind, slot, payload) from the slot threads
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._closed = False

    def groups(self, requests: list[Settings]) -> list[list[Settings]]:
        from .runner import by_model
        return by_model(requests)

    def free(self) -> int:
        return len(self._idle)

    def busy(self) -> bool:
        return len(self._idle) < len(self.slots)

    def submit(self, group: list[Settings], on_event) -> None:
        slot = self._idle.pop(0)
        threading.Thread(target=self._run, args=(slot, group, on_event), name=f"slot {slot.label}",
                         daemon=True).start()

    def next_result(self, timeout_s: Optional[float] = None) -> Optional[Result]:
        from .runner import next_landed
        return next_landed(self._landed, timeout_s, on_done=self._idle.append)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for proc in self._procs.values():
                _kill(proc)

    def _run(self, slot: Slot, group: list[Settings], on_event) -> None:
        """In the slot's thread: one slot process for `group`; every request gets one Result."""
        landed = 0
        try:
            for index, message in self._slot_messages(slot, group):
                if isinstance(message, Finished):
                    landed += 1
                    self._landed.put(("result", slot, message.result))
                elif on_event:
                    self._landed.put(("event", slot, (on_event, group[index], message)))
            if landed < len(group) and not self._closed:
                from ..measure.measure import error_result
                for settings in group[landed:]:
                    self._landed.put(("result", slot, error_result(
                        settings, f"the slot process of {slot.label} ended without a result")))
        finally:
            self._landed.put(("done", slot, None))

    def _slot_messages(self, slot: Slot, group: list[Settings]):
        channel_r, channel_w = os.pipe()
        lifeline_r, lifeline_w = os.pipe()
        env = dict(os.environ)
        if slot.visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.visible
        with self._lock:
            if self._closed:
                for fd in (channel_r, channel_w, lifeline_r, lifeline_w):
                    os.close(fd)
                return
            try:
                proc = subprocess.Popen([sys.executable, "-m", "wavemix_profile.run.devices", str(channel_w),
                                         str(lifeline_r)], stdin=subprocess.PIPE, env=env,
                                        pass_fds=(channel_w, lifeline_r), start_new_session=True)
            finally:
                os.close(channel_w)
                os.close(lifeline_r)
            self._procs[slot.label] = proc
        try:
            with proc.stdin:
                proc.stdin.write(json.dumps({"requests": [to_dict(s) for s in group],
                                             "timeout_s": self.timeout_s}).encode())
            with os.fdopen(channel_r, "rb") as channel:
                for line in channel:
                    try:
                        yield decode(line)
                    except ProtocolError:
                        break
        finally:
            os.close(lifeline_w)
            if proc.poll() is None:
                _kill(proc)
            with self._lock:
                self._procs.pop(slot.label, None)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session; its measuring child dies with it
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def main(argv: list[str]) -> int:
    """The slot process: measure the requests on stdin with iter_isolated, messages to CHANNEL_FD."""
    from .isolation import iter_isolated
    from ..core.protocol import encode
    channel_fd, lifeline_fd = (int(a) for a in argv)

    def watch() -> None:  # the driver never writes; end-of-file means it is gone
        while os.read(lifeline_fd, 1024):
            pass
        os._exit(1)  # our measuring child sees its own lifeline close and ends itself

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
    payload = json.load(sys.stdin)
    requests = [settings_from_dict(item) for item in payload["requests"]]
    channel = os.fdopen(channel_fd, "wb")
    lock = threading.Lock()

    def send(index: int, message) -> None:
        with lock:
            channel.write(encode(index, message))
            channel.flush()

    for index, result in enumerate(iter_isolated(requests, on_event=send, timeout_s=payload["timeout_s"])):
        send(index, Finished(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
