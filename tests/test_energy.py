"""Energy: NVML's counter through a stand-in NVML module, RAPL through a real powercap-shaped folder."""
import os
import time
from pathlib import Path

import pytest
import torch

from factories import tiny_cnn
from fake_nvml import FakeGpu, FakeNvml
from wavemix_profile.measure.energy import (RaplMeter, Unavailable, counter_meter, open_energy_meter, rapl_zones,
                                    wrapped_delta)
from wavemix_profile.measure.nvml import DeviceIdentity, open_device
from wavemix_profile.measure.throughput import EnergyUse, TimedBlocks, TimingSettings, energy_use, measure_throughput
from wavemix_profile.sources.training import StepConfig, TrainStep

UUID = "3b1c6a2e-0d51-a4f7-9e63-0c5d2b7a1f01"


def nvml_device(readings_mj):
    nvml = FakeNvml([FakeGpu(f"GPU-{UUID}", "00000000:17:00.0",
                             energy_mj=None if readings_mj is None else iter(readings_mj))])
    return open_device(DeviceIdentity(uuid=UUID, pci_bus_id=None), nvml)


# --- NVML -------------------------------------------------------------------------------------------

def test_nvml_meter_turns_millijoules_into_joules():
    meter = counter_meter(nvml_device([0, 1_250_000, 1_262_500]))  # one read checks the counter exists
    meter.start()
    assert meter.stop() == pytest.approx(12.5)


def test_throughput_stores_joules_per_image_and_watts_from_the_counter():
    # Reads: the check, train start/stop (+5 J), infer start/stop (+1.2 J).
    meter = counter_meter(nvml_device([0, 1_000, 6_000, 9_000, 10_200]))
    step = TrainStep(tiny_cnn(num_classes=10, image_size=16), StepConfig(device=torch.device("cpu"), amp="off",
                                                                        num_classes=10))
    timing = TimingSettings(batch_size=4, warmup=1, iterations=2, repeats=1)  # 8 timed images per mode
    result = measure_throughput(step, timing, image_size=16, energy=meter)
    assert result.energy_source == "nvml" and result.energy_note is None
    assert result.train_joules_per_image == pytest.approx(5.0 / 8)
    assert result.infer_joules_per_image == pytest.approx(1.2 / 8)
    assert result.train_images_per_joule == pytest.approx(8 / 5.0)
    # one block of 8 images: its seconds are 8 / images_per_s, so watts = 5 J x images_per_s / 8
    assert result.train_watts == pytest.approx(5.0 * result.train_images_per_s / 8)
    assert result.infer_watts == pytest.approx(1.2 * result.infer_images_per_s / 8)


def test_a_gpu_without_the_energy_counter_stores_why():
    meter = counter_meter(nvml_device(None))
    assert isinstance(meter, Unavailable) and "no NVML total energy counter: Not Supported" in meter.reason
    step = TrainStep(tiny_cnn(num_classes=10, image_size=16), StepConfig(device=torch.device("cpu"), amp="off",
                                                                        num_classes=10))
    result = measure_throughput(step, TimingSettings(batch_size=2, warmup=0, iterations=1, repeats=1),
                                image_size=16, energy=meter)
    assert result.energy_note == meter.reason and result.energy_source is None
    assert result.train_joules_per_image is None and result.infer_watts is None


def test_a_counter_that_did_not_move_gives_no_figure_and_says_so():
    used = energy_use(TimedBlocks([0.004, 0.005], joules=0.0), TimingSettings(batch_size=2, iterations=1, repeats=2))
    assert used.joules_per_image is None and "did not advance over 0.009 s" in used.note
    assert energy_use(TimedBlocks([1.0]), TimingSettings(batch_size=2)) == EnergyUse()  # no meter: nothing to say


# --- RAPL ---------------------------------------------------------------------------------------------

def write(path: Path, value) -> None:
    """Replace a counter file whole, as sysfs shows a new value: a reader never sees half a write."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)


def zone(root: Path, folder: str, name: str, energy_uj: int, max_range_uj: int) -> Path:
    path = root / folder
    path.mkdir(parents=True)
    write(path / "name", name)
    write(path / "energy_uj", energy_uj)
    write(path / "max_energy_range_uj", max_range_uj)
    return path / "energy_uj"


@pytest.fixture
def powercap(tmp_path):
    """Two packages, a core subzone, a psys zone and the control-type folder, as /sys/class/powercap has."""
    root = tmp_path / "powercap"
    (root / "intel-rapl").mkdir(parents=True)
    counters = {"package-0": zone(root, "intel-rapl:0", "package-0", 900_000, 1_000_000),
                "package-1": zone(root, "intel-rapl:1", "package-1", 5_000_000, 262_143_328_850)}
    zone(root, "intel-rapl:0:0", "core", 123, 1_000_000)
    zone(root, "intel-rapl:2", "psys", 456, 1_000_000)
    return root, counters


def test_only_package_zones_are_summed(powercap):
    root, _ = powercap
    zones = rapl_zones(root)
    assert [z.name for z in zones] == ["package-0", "package-1"]
    assert [z.max_range_uj for z in zones] == [1_000_000, 262_143_328_850]


def test_wrap_around_is_added_back(powercap):
    root, counters = powercap
    meter = RaplMeter(rapl_zones(root), poll_s=3600)
    meter.start()
    write(counters["package-0"], 100_000)      # wrapped: 900,000 -> 1,000,000 -> 100,000 is 200,000 µJ
    write(counters["package-1"], 5_500_000)    # 500,000 µJ
    assert meter.stop() == pytest.approx(0.7)


def test_every_wrap_between_polls_is_counted(powercap):
    root, counters = powercap
    meter = RaplMeter(rapl_zones(root)[:1], poll_s=3600)
    meter.start()
    for value in (100_000, 950_000):           # +200,000 (wrapped), +850,000
        write(counters["package-0"], value)
        meter.poll()
    write(counters["package-0"], 50_000)       # +100,000 (wrapped again)
    assert meter.stop() == pytest.approx(1.15)  # more than the counter's whole range


def test_the_background_thread_polls(powercap):
    root, counters = powercap
    meter = RaplMeter(rapl_zones(root)[:1], poll_s=0.001)
    meter.start()
    # Two wraps, each seen by the thread before the next write: only polling in between counts both.
    for value, counted in ((100_000, 0.2), (50_000, 0.2 + 0.95)):
        write(counters["package-0"], value)
        deadline = time.monotonic() + 10
        while meter.joules() != pytest.approx(counted) and time.monotonic() < deadline:
            time.sleep(0.001)
    assert meter.stop() == pytest.approx(0.2 + 0.95)


def test_wrapped_delta():
    assert wrapped_delta(100, 400, 1_000) == 300
    assert wrapped_delta(900, 100, 1_000) == 200


def test_no_powercap_folder_says_so(tmp_path):
    found = rapl_zones(tmp_path / "missing")
    assert isinstance(found, Unavailable) and "does not exist" in found.reason


def test_a_folder_without_packages_says_so(tmp_path):
    (tmp_path / "intel-rapl").mkdir()
    found = rapl_zones(tmp_path)
    assert isinstance(found, Unavailable) and found.reason == f"no RAPL package counter under {tmp_path}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_counters_readable_by_root_only_say_so(powercap):
    root, counters = powercap
    for path in counters.values():
        path.chmod(0o000)
    found = rapl_zones(root)
    assert isinstance(found, Unavailable) and "readable by root only" in found.reason


def test_this_machine_gets_rapl_or_the_reason_it_cannot():
    meter = open_energy_meter(torch.device("cpu"))
    expected = rapl_zones()
    if isinstance(expected, Unavailable):
        assert meter == expected
    else:
        assert meter.source == "rapl" and [z.name for z in meter.zones] == [z.name for z in expected]
