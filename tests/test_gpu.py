"""CUDA paths. Marked `gpu`: skipped without CUDA; run them on a GPU with `make test-gpu`."""
import pytest
import torch

from factories import tiny_cnn
from wavemix_profile.measure import measure
from wavemix_profile.probes import cuda_probe, emulate_budget, is_cuda_oom
from wavemix_profile.results import Settings
from wavemix_profile.throughput import TimingSettings, measure_throughput
from wavemix_profile.training import StepConfig, TrainStep

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
    assert mem.nvml_train_bytes is None or mem.nvml_train_bytes >= mem.reserved_train_bytes
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


def test_cuda_throughput_uses_events_and_reports_mfu_for_known_devices():
    step = cuda_step(amp="bf16")
    result = measure_throughput(step, TimingSettings(batch_size=64, warmup=3, iterations=10, repeats=3), image_size=32,
                                peak_flops_per_s=1e15, flops_per_image=(3_000_000, 1_000_000))
    assert result.timer == "cuda-events" and result.train_images_per_s > 0
    assert result.train_mfu == pytest.approx(result.train_images_per_s * 3_000_000 / 1e15)
