"""NVML device lookup by UUID and PCI bus id, against a stand-in NVML module (no GPU here)."""
import pytest

from fake_nvml import FakeGpu, FakeNvml
from wavemix_profile.measure.nvml import DeviceIdentity, NvmlUnavailable, open_device, pci_bus_id

GIB = 2**30
# Four cards in NVML's (PCI) order; torch's form of a UUID has no "GPU-" prefix.
UUIDS = ["3b1c6a2e-0d51-a4f7-9e63-0c5d2b7a1f01", "8e2f4c19-7a3d-5b60-c1e8-44f9a0d3b202",
         "c45d9e7b-12af-03c6-b8d2-9f1e6a7c0303", "f0a1b2c3-d4e5-f607-1829-3a4b5c6d7e04"]
BUSES = ["00000000:17:00.0", "00000000:65:00.0", "00000000:ca:00.0", "00000000:e3:00.0"]


def machine() -> FakeNvml:
    return FakeNvml([FakeGpu(f"GPU-{u}", bus, used_bytes=(i + 1) * GIB) for i, (u, bus) in enumerate(zip(UUIDS, BUSES))])


def test_uuid_finds_the_card_torch_sees_under_cuda_visible_devices():
    # CUDA_VISIBLE_DEVICES=2: torch's cuda:0 is the machine's third card, which NVML calls index 2.
    # Its index, 0, would name the first card; its UUID names the right one.
    nvml = machine()
    device = open_device(DeviceIdentity(uuid=UUIDS[2], pci_bus_id=None), nvml)
    assert device.handle is nvml.gpus[2] and device.used_bytes() == 3 * GIB
    assert nvml.initialised == 1


def test_uuid_in_nvml_form_is_taken_as_it_is():
    nvml = machine()
    assert open_device(DeviceIdentity(uuid=f"GPU-{UUIDS[1]}", pci_bus_id=None), nvml).handle is nvml.gpus[1]


def test_pci_bus_id_finds_the_card_when_the_uuid_does_not():
    nvml = machine()
    identity = DeviceIdentity(uuid="00000000-0000-0000-0000-000000000000", pci_bus_id=BUSES[3].upper())
    assert open_device(identity, nvml).handle is nvml.gpus[3]


def test_a_mig_instance_is_found_by_its_mig_uuid():
    nvml = FakeNvml([FakeGpu(f"MIG-{UUIDS[0]}", BUSES[0], used_bytes=5 * GIB)])
    assert open_device(DeviceIdentity(uuid=UUIDS[0], pci_bus_id=None), nvml).used_bytes() == 5 * GIB


def test_no_match_is_unavailable_and_says_what_was_tried():
    identity = DeviceIdentity(uuid="00000000-0000-0000-0000-000000000000", pci_bus_id="00000000:01:00.0")
    with pytest.raises(NvmlUnavailable) as err:
        open_device(identity, machine())
    assert "UUID GPU-00000000-0000-0000-0000-000000000000: Not Found" in str(err.value)
    assert "PCI bus id 00000000:01:00.0: Not Found" in str(err.value)


def test_nvml_that_does_not_initialise_is_unavailable():
    class NoDriver(FakeNvml):
        def nvmlInit(self):
            raise self.NVMLError("Driver Not Loaded")

    with pytest.raises(NvmlUnavailable, match="NVML did not initialise: Driver Not Loaded"):
        open_device(DeviceIdentity(uuid=UUIDS[0], pci_bus_id=None), NoDriver([]))


def test_pci_bus_id_is_written_as_nvml_writes_it():
    assert pci_bus_id(0, 0x65, 0) == "00000000:65:00.0"
    assert pci_bus_id(1, 0xCA, 0x1F) == "00000001:ca:1f.0"
