"""One CUDA device as NVIDIA's management library (NVML) sees it: used memory and the energy counter.

torch numbers devices after CUDA_VISIBLE_DEVICES (and CUDA_DEVICE_ORDER) have picked and ordered
them; NVML numbers every device of the machine in PCI order. The same index can therefore name two
different cards, so the device is found by its UUID (which torch and NVML share), or failing that by
its PCI bus id, never by its index.

Every function takes the NVML module as an argument (`pynvml` when none is given), so the lookup
can be tested with a stand-in module on a machine without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Optional

class NvmlUnavailable(RuntimeError):
    """NVML cannot be used for this device; the message says why, for the report."""


@dataclass(frozen=True)
class DeviceIdentity:
    """What torch knows of a device that NVML also knows."""

    uuid: Optional[str]         # torch's form, "58f8a8a5-...", or NVML's, "GPU-58f8a8a5-..." / "MIG-..."
    pci_bus_id: Optional[str]   # NVML's form, "00000000:01:00.0" (domain:bus:device.function, hex)


def pci_bus_id(domain: int, bus: int, device: int) -> str:
    """NVML's form of a PCI address, function 0: (0, 0x65, 0) -> "00000000:65:00.0"."""
    return f"{domain:08x}:{bus:02x}:{device:02x}.0"


def identity_of(device) -> DeviceIdentity:
    """UUID and PCI bus id of a torch CUDA device (index as torch counts, after CUDA_VISIBLE_DEVICES)."""
    import torch
    props = torch.cuda.get_device_properties(device)
    uuid = str(getattr(props, "uuid", "") or "") or None
    ids = [getattr(props, f"pci_{k}_id", None) for k in ("domain", "bus", "device")]  # torch 2.5 and newer
    return DeviceIdentity(uuid=uuid, pci_bus_id=None if None in ids else pci_bus_id(*ids))


def _uuid_candidates(uuid: str) -> list[str]:
    if uuid.startswith(("GPU-", "MIG-")):
        return [uuid]
    return [f"GPU-{uuid}", f"MIG-{uuid}"]  # torch prints the bare UUID; NVML wants the prefix


def load_nvml(nvml: Optional[ModuleType] = None) -> Any:
    """The initialised NVML module (pynvml unless one is given); NvmlUnavailable says why not."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError as exc:
            raise NvmlUnavailable(f"pynvml is not installed ({exc}); pip install nvidia-ml-py") from exc
    try:
        nvml.nvmlInit()
    except Exception as exc:  # no driver, or a container without the NVML library
        raise NvmlUnavailable(f"NVML did not initialise: {exc}") from exc
    return nvml


def nvml_handle(identity: DeviceIdentity, nvml: Any) -> Any:
    """NVML's handle for the device: by UUID first, then by PCI bus id; NvmlUnavailable if neither."""
    tried = []
    for uuid in _uuid_candidates(identity.uuid) if identity.uuid else []:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(uuid)
        except nvml.NVMLError as exc:
            tried.append(f"UUID {uuid}: {exc}")
    if identity.pci_bus_id:
        try:
            return nvml.nvmlDeviceGetHandleByPciBusId(identity.pci_bus_id)
        except nvml.NVMLError as exc:
            tried.append(f"PCI bus id {identity.pci_bus_id}: {exc}")
    raise NvmlUnavailable("NVML knows no device with " + ("; ".join(tried) or "no UUID or PCI bus id given"))


@dataclass(frozen=True)
class NvmlDevice:
    """One device's NVML handle with the module that made it."""

    nvml: Any
    handle: Any

    def used_bytes(self) -> Optional[int]:
        """Device-level used memory, as nvidia-smi shows it (context, cache, other processes)."""
        try:
            return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)
        except self.nvml.NVMLError:  # a virtualised device may refuse it; a missing reading is no error
            return None

    def energy_millijoules(self) -> int:
        """Energy used since the driver was loaded, mJ (Volta and newer); raises NVMLError if unsupported."""
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))


def open_device(identity: DeviceIdentity, nvml: Optional[ModuleType] = None) -> NvmlDevice:
    """The NVML device for `identity`; NvmlUnavailable (with the reason) when there is none."""
    module = load_nvml(nvml)
    return NvmlDevice(module, nvml_handle(identity, module))


def open_torch_device(device) -> NvmlDevice:
    """The NVML device behind a torch CUDA device; NvmlUnavailable when NVML cannot see it."""
    return open_device(identity_of(device))
