"""A stand-in for the pynvml module on a machine without an NVIDIA GPU.

It answers the NVML calls wavemix_profile.measure.nvml makes from a table of devices in NVML's (PCI) order,
and raises its NVMLError for a device or feature it does not have, as the real library does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Iterator, Optional


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    uuid: str                          # NVML's form, "GPU-..." or "MIG-..."
    pci_bus_id: str                    # "00000000:17:00.0"
    used_bytes: int = 0
    energy_mj: Optional[Iterator[int]] = None   # successive counter readings; None: not supported
    energy_reads: int = field(default=0)


class FakeNvml:
    """Module-like: pass it where wavemix_profile.measure.nvml takes an NVML module."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu]):
        self.gpus = gpus
        self.initialised = 0

    def nvmlInit(self) -> None:
        self.initialised += 1

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        for gpu in self.gpus:
            if gpu.uuid == uuid:
                return gpu
        raise NVMLError("Not Found")

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str) -> FakeGpu:
        for gpu in self.gpus:
            if gpu.pci_bus_id.lower() == bus_id.lower():
                return gpu
        raise NVMLError("Not Found")

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(used=handle.used_bytes, total=80 * 2**30, free=80 * 2**30 - handle.used_bytes)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeGpu) -> int:
        if handle.energy_mj is None:
            raise NVMLError("Not Supported")
        handle.energy_reads += 1
        return next(handle.energy_mj)
