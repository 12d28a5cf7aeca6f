"""Energy used over the timed blocks: NVML's energy counter on NVIDIA GPUs, RAPL on the CPU.

An :class:`EnergyMeter` is started before the first timed block and stopped after the last; `stop`
returns the joules used between. Where no counter can be read, :func:`open_energy_meter` returns
:class:`Unavailable` with the reason, which is stored with the result and shown in the report.

* NVIDIA GPUs: `nvmlDeviceGetTotalEnergyConsumption`, millijoules since the driver was loaded
  (Volta and newer), for the whole board: other processes on the same GPU count too.
* CPUs: the RAPL package counters under /sys/class/powercap (`intel-rapl:N/energy_uj`,
  microjoules; AMD's Zen parts appear there too). Each wraps at its `max_energy_range_uj`
  (minutes at most at full load), so the counters are read every second in a background thread and
  every wrap is added back. They cover the whole package, with other processes and idle cores, and
  most virtual machines, and every non-root user since Linux 5.10 (CVE-2020-8694), cannot read them.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol, Union

from .sampling import Periodic

POWERCAP = Path("/sys/class/powercap")
# Often enough that no counter can wrap twice between reads (the fastest wrap in minutes).
RAPL_POLL_S = 1.0
_PACKAGE_ZONE = re.compile(r"^intel-rapl:\d+$")  # packages; their subzones (intel-rapl:0:0) are parts of them


class EnergyMeter(Protocol):
    """A counter of energy; `source` names it in the results ("nvml", "rapl")."""

    source: str

    def start(self) -> None: ...

    def stop(self) -> float:
        """Joules used since start()."""
        ...


@dataclass(frozen=True)
class Unavailable:
    """No energy counter for this device, and why (one line, for the report)."""

    reason: str


class CounterMeter:
    """A counter that never wraps in practice (NVML's is 64-bit), read at start and at stop.

    `read` returns the counter in `joules_per_unit` units (NVML: millijoules, 1e-3).
    """

    def __init__(self, source: str, read: Callable[[], int], joules_per_unit: float):
        self.source = source
        self._read = read
        self._joules_per_unit = joules_per_unit
        self._begin: Optional[int] = None

    def start(self) -> None:
        self._begin = self._read()

    def stop(self) -> float:
        if self._begin is None:
            raise RuntimeError("energy meter stopped before it was started")
        used = self._read() - self._begin
        self._begin = None
        return used * self._joules_per_unit


@dataclass(frozen=True)
class RaplZone:
    """One RAPL package counter: its name ("package-0"), counter file and wrap-around range (µJ)."""

    name: str
    energy_path: Path
    max_range_uj: int

    def read_uj(self) -> int:
        return int(self.energy_path.read_text().strip())


def wrapped_delta(before: int, after: int, max_range: int) -> int:
    """Counter increase from `before` to `after` for a counter that wraps to 0 past `max_range`,
    assuming at most one wrap between the two reads."""
    return after - before if after >= before else after + max_range - before


class RaplMeter:
    """The sum of the RAPL package counters, read every `poll_s` so each wrap-around is counted."""

    source = "rapl"

    def __init__(self, zones: list[RaplZone], poll_s: float = RAPL_POLL_S):
        self.zones = zones
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._last: list[int] = []
        self._total_uj = 0
        self._periodic: Optional[Periodic] = None

    def poll(self) -> None:
        """Read every counter now and add what each gained since its last read."""
        with self._lock:
            now = [zone.read_uj() for zone in self.zones]
            if self._last:
                self._total_uj += sum(wrapped_delta(b, a, z.max_range_uj)
                                      for b, a, z in zip(self._last, now, self.zones))
            self._last = now

    def joules(self) -> float:
        """Joules counted since start() up to the latest poll."""
        with self._lock:
            return self._total_uj / 1e6

    def start(self) -> None:
        with self._lock:
            self._last, self._total_uj = [], 0
        self._periodic = Periodic(self.poll, self._poll_s)
        self._periodic.__enter__()  # the first poll, on entry, sets the starting counts

    def stop(self) -> float:
        if self._periodic is None:
            raise RuntimeError("energy meter stopped before it was started")
        periodic, self._periodic = self._periodic, None
        periodic.__exit__(None, None, None)  # stops the thread, then polls once more
        return self.joules()


def rapl_zones(root: Path = POWERCAP) -> Union[list[RaplZone], Unavailable]:
    """The readable RAPL package zones under `root`, or why there are none."""
    if not root.is_dir():
        return Unavailable(f"no RAPL energy counters: {root} does not exist (this machine or "
                           "virtual machine exposes no power-capping interface)")
    zones, unreadable = [], []
    for folder in sorted(p for p in root.iterdir() if _PACKAGE_ZONE.match(p.name)):
        try:
            name = (folder / "name").read_text().strip()
            if not name.startswith("package"):
                continue  # "psys" and the like overlap the packages
            zone = RaplZone(name, folder / "energy_uj", int((folder / "max_energy_range_uj").read_text().strip()))
            zone.read_uj()
        except PermissionError:
            unreadable.append(folder.name)
            continue
        except (OSError, ValueError):
            continue
        zones.append(zone)
    if zones:
        return zones
    if unreadable:
        return Unavailable(f"RAPL energy counters under {root} ({', '.join(unreadable)}) are readable by root "
                           "only (Linux 5.10 and newer, CVE-2020-8694)")
    return Unavailable(f"no RAPL package counter under {root}")


def nvml_meter(device) -> Union[CounterMeter, Unavailable]:
    """NVML's total energy counter of a torch CUDA device, or why it cannot be read."""
    from .nvml import NvmlUnavailable, open_torch_device
    try:
        nvml_device = open_torch_device(device)
    except NvmlUnavailable as exc:
        return Unavailable(f"no NVML energy counter: {exc}")
    return counter_meter(nvml_device)


def counter_meter(nvml_device) -> Union[CounterMeter, Unavailable]:
    """NVML's total energy counter (mJ) of an opened NVML device; Unavailable where the GPU has none."""
    try:
        nvml_device.energy_millijoules()
    except nvml_device.nvml.NVMLError as exc:  # pre-Volta GPUs and some virtual GPUs
        return Unavailable(f"the GPU has no NVML total energy counter: {exc}")
    return CounterMeter("nvml", nvml_device.energy_millijoules, 1e-3)


def open_energy_meter(device) -> Union[EnergyMeter, Unavailable]:
    """The energy meter for a torch device: NVML on CUDA, RAPL on the CPU."""
    if device.type == "cuda":
        return nvml_meter(device)
    zones = rapl_zones()
    return zones if isinstance(zones, Unavailable) else RaplMeter(zones)
