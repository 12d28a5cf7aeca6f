"""Writes results_fixture.jsonl: a fixed set of made-up results for the renderer tests.

The values are realistic but invented: they give the renderer tests GPU rows, which no run on this
machine can. The golden files come from a real run instead (tests/golden/). Regenerate deliberately:

    python tests/data/make_results_fixture.py
"""
from __future__ import annotations

from pathlib import Path

from wavemix_profile.estimate.cuda_overheads import band, overheads_for
from wavemix_profile.core.gpus import peak_flops_per_s
from wavemix_profile.core.results import (Environment, FlopsResult, MaxBatchResult, MemoryResult,
                                     ProbeRecord, Result, Settings, ThroughputResult, result_to_json)

GIB = 2**30
BUDGET = 16 * GIB
OUT = Path(__file__).with_name("results_fixture.jsonl")

H100 = Environment(device_name="NVIDIA H100 80GB HBM3", device_memory_bytes=85_045_395_456,
                   driver_version="550.54.15", cuda_version="12.4", torch_version="2.5.1+cu124",
                   torchvision_version="0.20.1+cu124", python_version="3.11.9",
                   platform="Linux-5.15.0-x86_64-with-glibc2.35", cpu_threads=16,
                   cudnn_benchmark=True, tf32_matmul=False)
CPU = Environment(device_name="CPU: AMD EPYC 7B13", device_memory_bytes=None, driver_version=None,
                  cuda_version=None, torch_version="2.5.1+cpu", torchvision_version="0.20.1+cpu",
                  python_version="3.11.9", platform="Linux-5.15.0-x86_64-with-glibc2.35", cpu_threads=2,
                  cudnn_benchmark=None, tf32_matmul=None)

FAMILY = {"ResNet-18": "convolutional", "ConvMixer-256/16": "token mixer", "CCT-128/4x4": "transformer",
          "WaveMix-128/7": "WaveMix", "WaveMix-256/7": "WaveMix"}

def _zoo_params(name: str) -> int:
    """Counted on the zoo's model at 100 classes, so the fixture's counts are ones the zoo has."""
    from wavemix_profile.models import create_model
    return sum(p.numel() for p in create_model(name, num_classes=100, image_size=32).parameters())


PARAMS = {name: _zoo_params(name) for name in FAMILY}  # ResNet-18 11,220,132; WaveMix-128/7 2,416,580
# name: (forward GMACs at 32 px, peak train GiB at 32 px, max train/infer batch at 32 px,
#        train/infer images/s at 32 px); 64 px scales these below.
AT_32 = {
    "ResNet-18": (0.5566, 0.91, 1216, 4480, 9850.0, 31240.0),
    "ConvMixer-256/16": (1.3503, 5.24, 192, 640, 1021.5, 3310.2),
    "CCT-128/4x4": (0.3129, 11.62, 88, 352, 912.4, 3604.9),
    "WaveMix-128/7": (0.2511, 1.07, 1024, 3584, 7420.8, 21093.3),
    "WaveMix-256/7": (0.9870, 1.93, 576, 1280, 3105.6, 8812.0),
}


# The CPU record's predictions are for a V100 with CUDA 12 (cuda_overheads.py): its band's upper end
# is the tensors' reserved bytes plus that row's overheads.
V100 = overheads_for("V100", cuda_version="12.4")


def _max_batch(mode: str, batch: int, predicted: bool = False) -> MaxBatchResult:
    probes = (ProbeRecord(batch=batch, fits=True, peak_bytes=int(BUDGET * 0.93)),
              ProbeRecord(batch=batch + 64, fits=False))
    allocated = int(BUDGET * 0.88)
    return MaxBatchResult(mode=mode, max_batch=batch, budget_bytes=BUDGET, predicted=predicted,
                          method="cpu-estimate, model-guided" if predicted else "cuda emulated budget, model-guided",
                          probes=() if predicted else probes, search_s=12.5,
                          predicted_peak_bytes=allocated if predicted else None,
                          predicted_device_bytes=band(allocated, int(allocated * 1.04), V100.row, mode).device_bytes
                          if predicted else None,
                          overhead_source=V100.describe() if predicted else None)


# Board power while timing (W): training draws more than inference. Joules per image = W / images/s.
TRAIN_WATTS, INFER_WATTS = 412.0, 287.0
NO_RAPL = ("no RAPL energy counters: /sys/class/powercap does not exist (this machine or virtual machine "
           "exposes no power-capping interface)")


def gpu_result(name: str, size: int, *, skip: tuple[str, ...] = ()) -> Result:
    scale = (size // 32) ** 2
    macs, mem, b_train, b_infer, train, infer = AT_32[name]
    mem = mem * (1 + 0.8 * (scale - 1))
    train, infer = round(train / scale ** 0.9, 1), round(infer / scale ** 0.9, 1)
    peak = peak_flops_per_s(H100.device_name, "fp16")
    settings = Settings(model=name, image_size=size, device="cuda", memory_budget_bytes=BUDGET, skip=skip)
    return Result(
        settings=settings, model_name=name, family=FAMILY[name], environment=H100,
        params_total=PARAMS[name], params_trainable=PARAMS[name],
        flops=FlopsResult(forward_macs_per_image=int(macs * scale * 1e9),
                          forward_flops_per_image=int(2 * macs * scale * 1e9),
                          train_step_flops_per_image=int(6 * macs * scale * 1e9), uncounted_ops=(),
                          fvcore_macs_per_image=int(macs * scale * 1e9 * 0.998), fvcore_unsupported_ops=(),
                          convention="1 MAC = 2 FLOPs"),
        memory=MemoryResult(method="cuda-allocator", batch_size=64, peak_train_bytes=int(mem * GIB),
                            peak_infer_bytes=int(mem * GIB * 0.31), reserved_train_bytes=int(mem * GIB * 1.12),
                            nvml_peak_train_bytes=int(mem * GIB * 1.12 + 520 * 2**20)),
        throughput=ThroughputResult(batch_size=64, timer="cuda-events", threads=16, iterations=10, repeats=3,
                                    train_images_per_s=train, infer_images_per_s=infer,
                                    train_cv=0.012, infer_cv=0.021, precision="fp16",
                                    train_mfu=train * 6 * macs * scale * 1e9 / peak,
                                    infer_mfu=infer * 2 * macs * scale * 1e9 / peak,
                                    train_joules_per_image=TRAIN_WATTS / train, infer_joules_per_image=INFER_WATTS / infer,
                                    train_watts=TRAIN_WATTS, infer_watts=INFER_WATTS, energy_source="nvml"),
        max_batch_train=None if "max-batch" in skip else _max_batch("train", b_train // scale),
        max_batch_infer=None if "max-batch" in skip else _max_batch("infer", b_infer // scale),
        wall_s=41.0, created_at="2025-05-02T10:00:00+00:00")


def cpu_estimate() -> Result:
    settings = Settings(model="WaveMix-128/7", image_size=32, device="cpu", memory_budget_bytes=BUDGET,
                        throughput_batch_size=8, warmup_steps=1, timed_iterations=2, repeats=2, target_gpu="V100")
    base = gpu_result("WaveMix-128/7", 32)
    train = band(int(1.21 * GIB), int(1.32 * GIB), V100.row, "train")
    infer = band(int(0.36 * GIB), int(0.40 * GIB), V100.row, "infer")
    return Result(
        settings=settings, model_name="WaveMix-128/7", family="WaveMix", environment=CPU,
        params_total=base.params_total, params_trainable=base.params_trainable, flops=base.flops,
        memory=MemoryResult(method="cpu-estimate", batch_size=64, peak_train_bytes=train.allocated_bytes,
                            peak_infer_bytes=infer.allocated_bytes, reserved_train_bytes=int(1.32 * GIB),
                            reserved_infer_bytes=int(0.40 * GIB), predicted_device_train_bytes=train.device_bytes,
                            predicted_device_infer_bytes=infer.device_bytes, overhead_source=V100.describe()),
        throughput=ThroughputResult(batch_size=8, timer="wall-clock", threads=2, iterations=2, repeats=2,
                                    train_images_per_s=38.46, infer_images_per_s=141.2, train_cv=0.083,
                                    infer_cv=0.057, precision="fp32", energy_note=NO_RAPL),
        max_batch_train=_max_batch("train", 832, predicted=True),
        max_batch_infer=_max_batch("infer", 2240, predicted=True),
        wall_s=96.0, created_at="2025-05-02T11:00:00+00:00")


def failed() -> Result:
    return Result(settings=Settings(model="CCT-128/4x4", image_size=64, device="cuda", memory_budget_bytes=BUDGET),
                  model_name="CCT-128/4x4", family="transformer", environment=H100,
                  error="OutOfMemoryError: CUDA out of memory. Tried to allocate 8.00 GiB",
                  wall_s=7.5, created_at="2025-05-02T10:30:00+00:00")


def fixture_results() -> list[Result]:
    at_32 = [gpu_result(name, 32) for name in AT_32]
    at_64 = [gpu_result("ResNet-18", 64, skip=("max-batch",)), gpu_result("ConvMixer-256/16", 64), failed(),
             gpu_result("WaveMix-128/7", 64), gpu_result("WaveMix-256/7", 64)]
    return at_32 + at_64 + [cpu_estimate()]


if __name__ == "__main__":
    OUT.write_text("".join(result_to_json(r) + "\n" for r in fixture_results()), encoding="utf-8")
    print(f"wrote {OUT}")
