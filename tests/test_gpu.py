"""CUDA paths. Marked `gpu`: skipped without CUDA; run them on a GPU with `make test-gpu`."""
import os
import subprocess
import sys

import pytest
import torch

from factories import tiny_cnn
from wavemix_profile.core.gpus import peak_flops_per_s
from wavemix_profile.measure.measure import measure
from wavemix_profile.measure.memory import cuda_memory_result, nvml_used_reader, release_cuda_memory
from wavemix_profile.models import create_model
from wavemix_profile.measure.nvml import DeviceIdentity, identity_of, open_device
from wavemix_profile.measure.probes import cuda_probe, emulate_budget, is_cuda_oom
from wavemix_profile.core.results import Settings
from wavemix_profile.measure.sampling import PeakSampler
from wavemix_profile.sources.training import StepConfig, TrainStep

pytestmark = pytest.mark.gpu


def cuda_step(amp="fp16"):
    return TrainStep(tiny_cnn(num_classes=10, image_size=32), StepConfig(device=torch.device("cuda"), amp=amp,
                                                                        num_classes=10))


def test_measure_on_cuda_records_allocator_nvml_and_environment():
    result = measure(Settings(model="WaveMix-32/5", image_size=32, batch_size=64, device="cuda",
                              throughput_batch_size=64, timed_iterations=5, repeats=3, skip=("max-batch",)))
    assert result.ok, result.error
    mem = result.memory
    assert mem.method == "cuda-allocator" and not mem.is_estimate
    assert mem.params_bytes < mem.peak_train_bytes <= mem.reserved_train_bytes
    assert mem.nvml_peak_train_bytes is None or mem.nvml_peak_train_bytes >= mem.reserved_train_bytes
    assert result.throughput.timer == "cuda-events" and result.throughput.precision == "fp16"
    assert result.environment.device_memory_bytes > 0 and result.environment.cudnn_benchmark is not None


def test_probe_fits_then_out_of_memory_recovers():
    step = cuda_step()
    assert cuda_probe(step, "train", batch=8, image_size=32).fits
    total = torch.cuda.get_device_properties(0).total_memory
    huge = int(total // (3 * 32 * 32 * 4)) * 4  # the input alone exceeds the card
    outcome = cuda_probe(step, "infer", batch=huge, image_size=32)
    assert not outcome.fits and outcome.peak_bytes is None
    assert cuda_probe(step, "train", batch=8, image_size=32).fits  # still usable after the OOM


def test_emulated_budget_caps_the_allocator():
    usable = emulate_budget(torch.device("cuda"), 2 * 2**30)
    try:
        assert 0 < usable < 2 * 2**30
        with pytest.raises(torch.cuda.OutOfMemoryError) as err:
            torch.empty(3 * 2**30, dtype=torch.uint8, device="cuda")
        assert is_cuda_oom(err.value)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)


def test_found_max_batch_fits_and_the_next_does_not():
    settings = Settings(model="python:factories:tiny_cnn", image_size=32, device="cuda", num_classes=10,
                        memory_budget_bytes=2 * 2**30, max_batch_modes=("infer",),
                        skip=("flops", "memory", "throughput"))
    found = measure(settings).max_batch_infer
    assert not found.predicted and found.max_batch > 0
    usable = emulate_budget(torch.device("cuda"), 2 * 2**30)
    try:
        step = cuda_step()
        assert cuda_probe(step, "infer", batch=found.max_batch, image_size=32).fits
        assert not cuda_probe(step, "infer", batch=found.max_batch + 1, image_size=32).fits
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
    assert usable > 0


def test_cuda_throughput_mfu_comes_from_the_device_name_and_energy_from_nvml():
    result = measure(Settings(model="ResNet-18", image_size=32, batch_size=256, device="cuda", amp="bf16",
                              throughput_batch_size=256, warmup_steps=5, timed_iterations=20, repeats=3,
                              skip=("memory", "max-batch")))
    assert result.ok, result.error
    timing, env = result.throughput, result.environment
    assert timing.timer == "cuda-events" and timing.train_images_per_s > 0
    peak = peak_flops_per_s(env.device_name, "bf16")
    if peak is None:
        assert timing.train_mfu is None, f"{env.device_name} is not in gpus.CARDS with a peak"
    else:
        assert timing.train_mfu == pytest.approx(
            timing.train_images_per_s * result.flops.train_step_flops_per_image / peak)
        assert 0 < timing.train_mfu < 1 and 0 < timing.infer_mfu < 1
    if torch.cuda.get_device_capability(0) >= (7, 0):  # NVML's energy counter: Volta and newer
        assert timing.energy_source == "nvml", timing.energy_note
        assert timing.train_joules_per_image > 0 and timing.infer_joules_per_image > 0
        assert 1 < timing.train_watts < 2000 and 1 < timing.infer_watts < 2000


def test_nvml_handle_is_the_card_torch_calls_cuda_0():
    import pynvml
    identity = identity_of(torch.device("cuda", 0))
    device = open_device(identity)
    nvml_uuid = pynvml.nvmlDeviceGetUUID(device.handle)
    nvml_uuid = nvml_uuid.decode() if isinstance(nvml_uuid, bytes) else nvml_uuid
    assert nvml_uuid.split("-", 1)[1] == str(torch.cuda.get_device_properties(0).uuid)
    if identity.pci_bus_id:
        bus = pynvml.nvmlDeviceGetPciInfo(device.handle).busId
        assert (bus.decode() if isinstance(bus, bytes) else bus).lower() == identity.pci_bus_id
        by_bus = open_device(DeviceIdentity(uuid=None, pci_bus_id=identity.pci_bus_id))
        assert pynvml.nvmlDeviceGetUUID(by_bus.handle) == pynvml.nvmlDeviceGetUUID(device.handle)


def test_under_cuda_visible_devices_the_last_card_is_found_by_uuid():
    # A child that sees only the machine's last card calls it cuda:0; NVML still calls it by its own index.
    import pynvml
    pynvml.nvmlInit()
    last = pynvml.nvmlDeviceGetCount() - 1
    expected = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(last))
    code = ("import torch, pynvml\n"
            "from wavemix_profile.measure.nvml import identity_of, open_device\n"
            "print(pynvml.nvmlDeviceGetUUID(open_device(identity_of(torch.device('cuda', 0))).handle))\n")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(last), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (expected.decode() if isinstance(expected, bytes) else expected)


def test_sampled_nvml_peak_covers_what_the_allocator_reserved():
    step = cuda_step()
    x, y = step.batch(512, 32)
    torch.cuda.reset_peak_memory_stats()
    with PeakSampler(nvml_used_reader(torch.device("cuda"))) as sampler:
        for _ in range(5):
            step.train(x, y)
        torch.cuda.synchronize()
    assert sampler.readings >= 2 and sampler.peak is not None
    # NVML's used memory holds the allocator's reserve plus the CUDA context
    assert sampler.peak >= torch.cuda.max_memory_reserved()


def test_measured_inference_peak_is_a_fresh_models():
    # ResNet-18's Adam state (about 90 MB) would stand out if the training step's leftovers were counted.
    config = StepConfig(device=torch.device("cuda"), amp="fp16", num_classes=100)

    def build():
        return create_model("ResNet-18", num_classes=100, image_size=32)

    memory = cuda_memory_result(TrainStep(build(), config), batch=64, image_size=32, warmup_steps=2)
    release_cuda_memory()
    fresh = TrainStep(build(), config)
    probed = cuda_probe(fresh, "infer", batch=64, image_size=32)
    del fresh
    release_cuda_memory()
    tolerance = 2 * 2**20  # allocator rounding and cuDNN workspace choices, far below Adam's state
    assert memory.optimizer_state_bytes > 20 * tolerance
    assert abs(memory.peak_infer_bytes - probed.peak_bytes) <= tolerance


def _op_dtypes(model, x, autocast):
    """(function, output dtypes) of one forward under `autocast`, in call order, recorded at the torch
    function level (above autocast and the device's kernels, so the same calls on both devices)."""
    from torch.overrides import TorchFunctionMode

    class Record(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            flat = out if isinstance(out, (tuple, list)) else (out,)
            self.seen.append((getattr(func, "__name__", str(func)),
                              tuple(str(t.dtype) for t in flat if isinstance(t, torch.Tensor))))
            return out

    record = Record()
    with autocast, record:
        model(x)
    return record.seen


@pytest.mark.parametrize("name", ["ViT-128/4x4", "CCT-128/4x4", "CvT-128/4x4", "Hybrid ViN-128/4x4",
                                  "2D MLP-Mixer-64/5", "2D FNet-64/5", "WaveMix-128/7", "ResNet-18"])
def test_the_cpu_emulation_of_cuda_autocast_gives_cuda_s_dtypes_call_by_call(name):
    from wavemix_profile.estimate.autocast_policy import cuda_autocast_policy
    from wavemix_profile.models import create_model
    torch.manual_seed(0)
    model = create_model(name, num_classes=100, image_size=32)
    x = torch.randn(2, 3, 32, 32)
    with cuda_autocast_policy():
        emulated = _op_dtypes(model, x, torch.autocast("cpu", dtype=torch.float16))
    real = _op_dtypes(model.cuda(), x.cuda(), torch.autocast("cuda", dtype=torch.float16))
    differ = [(e, r) for e, r in zip(emulated, real) if e != r]
    assert len(emulated) == len(real) and not differ, differ[:5]


@pytest.mark.parametrize("name", ["ResNet-18", "WaveMix-128/7"])
def test_predicted_reserved_is_within_10_percent_of_the_measured(name):
    from dataclasses import replace

    from wavemix_profile.estimate.cuda_overheads import band, overheads_for
    from wavemix_profile.measure.memory import CpuEstimator, cpu_memory_result
    config = StepConfig(device=torch.device("cuda"), amp="fp16", num_classes=100)

    def build():
        return create_model(name, num_classes=100, image_size=32)

    release_cuda_memory()
    measured = cuda_memory_result(TrainStep(build(), config), batch=64, image_size=32, warmup_steps=2)
    release_cuda_memory()
    predicted = cpu_memory_result(CpuEstimator(build, replace(config, device=torch.device("cpu"))),
                                  batch=64, image_size=32)
    # the band's reserved end: the allocator model's reserved bytes plus the cuBLAS workspaces the
    # allocator holds for this GPU (measured reserved holds them too)
    row = overheads_for(torch.cuda.get_device_name(), cuda_version=torch.version.cuda).row
    pairs = {mode: (band(getattr(predicted, f"peak_{mode}_bytes"), getattr(predicted, f"reserved_{mode}_bytes"),
                         row, mode).reserved_bytes, getattr(measured, f"reserved_{mode}_bytes"))
             for mode in ("train", "infer")}
    for mode, (got, want) in pairs.items():
        print(f"{name} {mode}: predicted reserved {got / 2**20:.0f} MiB, measured {want / 2**20:.0f} MiB")
    # 10%, or one 20 MiB large-pool segment and cuDNN's convolution workspace (not modelled: it changes
    # speed, not what fits) where the step reserves little: 18 to 24 MiB at inference on an H200
    assert all(abs(got - want) <= max(0.10 * want, 32 * 2**20) for got, want in pairs.values()), pairs
