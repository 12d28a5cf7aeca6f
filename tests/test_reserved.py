"""The CPU estimate's predicted max_memory_reserved: the fake step's allocations, put in the order a CUDA
measurement makes them, replayed through the allocator model (reserved.py, allocator.py).

The oracle for the order is a real step on this machine: the same sequence memory.measure_step_peaks
runs, with LiveStorageTracker recording every storage made and freed and the allocator model fed from
that record, so nothing of the estimate's own composition is reused.
"""
import pytest
import torch
import torch.nn as nn

from factories import linear_probe
from wavemix_profile.estimate.allocator import MIB, Alloc, Allocator, Free
from wavemix_profile.measure.memory import CpuEstimator, LiveStorageTracker, _state_tensors, cpu_memory_result
from wavemix_profile.estimate.reserved import optimizer_state_events, placement_events
from wavemix_profile.sources.training import StepConfig, TrainStep

CPU = torch.device("cpu")
OFF = StepConfig(device=CPU, amp="off", num_classes=10)


def conv_linear():
    """Conv(3->8) and a Linear on 8x32x32 features: at batch 24 every block is under 1 MiB, and where
    Adam's state is made decides how the small pool fragments (4 MiB were it made before the step)."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 32 * 32, 10))


def real_replay(build, mode: str, *, batch: int, image_size: int, warmup_steps: int = 2) -> Allocator:
    """The allocator model fed by a real CPU run of what measure_step_peaks does on a GPU: weights
    placed, batch and labels made, warm-up steps, peaks reset, then the measured step; or, for
    inference, a fresh model's weights and batch, the labels freed, then the pass."""
    torch.manual_seed(0)
    step = TrainStep(build(), OFF)
    weights = [*step.model.parameters(), *step.model.buffers()]
    allocator = Allocator()
    allocator.replay([Alloc(("weight", i), t.numel() * t.element_size()) for i, t in enumerate(weights)])
    before = []
    with LiveStorageTracker(existing=weights, trace=before):
        x, y = step.batch(batch, image_size)
        for _ in range(warmup_steps if mode == "train" else 0):
            step.train(x, y)
    # on CUDA Adam keeps its step counts on the host: they take no device memory. A storage's id is its
    # address, which a storage freed earlier may have had: a counter's is its id's last Alloc (it lives on)
    counters = {state["step"].untyped_storage()._cdata for state in step.optimizer.state.values()}
    made = {e.id: i for i, e in enumerate(before) if type(e) is Alloc and e.id in counters}
    before = [e for i, e in enumerate(before) if i not in made.values()]
    if mode == "infer":
        before.append(Free(y.untyped_storage()._cdata))
        del y
    allocator.replay(before)
    allocator.reset_peak()
    measured = []
    with LiveStorageTracker(existing=[*_state_tensors(step), x], trace=measured):
        step.train(x, y) if mode == "train" else step.infer(x)
    allocator.replay(measured)
    return allocator


@pytest.mark.parametrize("mode, segments", [("train", 3), ("infer", 2)])
def test_predicted_reserved_is_what_the_real_steps_allocations_reserve(mode, segments):
    real = real_replay(conv_linear, mode, batch=24, image_size=32)
    estimate = CpuEstimator(conv_linear, OFF).estimate(mode, batch=24, image_size=32)
    assert estimate.reserved_bytes == real.peak_reserved_bytes
    # every block is at most 1 MiB, so every segment is a 2 MiB small one
    assert [(s.size_bytes, s.small) for s in real.segments()] == [(2 * MIB, True)] * segments
    assert estimate.reserved_bytes == segments * 2 * MIB >= estimate.allocated_bytes


def test_linear_probe_training_fits_one_small_segment():
    # Linear(192 -> 10): weight, gradient, Adam's two states and its temporaries are 7,680 B each, the
    # batch 3,072 B: every block is small and together they stay far below one 2 MiB segment.
    estimator = CpuEstimator(lambda: linear_probe(num_classes=10, image_size=8), OFF)
    estimate = estimator.estimate("train", batch=4, image_size=8)
    assert estimate.reserved_bytes == 2 * MIB
    assert estimate.allocated_bytes == estimator.peak("train", batch=4, image_size=8)


@pytest.mark.parametrize("image_size, reserved", [
    # weight 10 x 49,152 x 4 B = 1.875 MiB: large pool, under 10 MiB, so a 20 MiB segment; the input
    # (4 x 3 x 128 x 128 x 4 B = 0.75 MiB), the labels and the logits share one 2 MiB small segment
    (128, 22 * MIB),
    # weight 12,288,000 B: from 10 MiB a segment of its own size rounded up to 2 MiB, 12 MiB; the
    # input, 4.69 MiB, a 20 MiB segment; labels and logits a 2 MiB small one
    (320, 34 * MIB),
])
def test_inference_reserved_follows_the_segment_rules(image_size, reserved):
    def build():
        return linear_probe(num_classes=10, image_size=image_size)

    estimate = CpuEstimator(build, OFF).estimate("infer", batch=4, image_size=image_size)
    assert estimate.reserved_bytes == reserved
    assert real_replay(build, "infer", batch=4, image_size=image_size).peak_reserved_bytes == reserved


def test_cpu_memory_result_carries_the_prediction_beside_the_allocated_peaks():
    estimator = CpuEstimator(conv_linear, OFF)
    result = cpu_memory_result(estimator, batch=24, image_size=32)
    assert (result.reserved_train_bytes, result.reserved_infer_bytes) == (6 * MIB, 4 * MIB)
    assert result.peak_train_bytes == estimator.peak("train", batch=24, image_size=32)
    assert result.peak_infer_bytes == estimator.peak("infer", batch=24, image_size=32)


def test_tracker_traces_storages_made_and_freed_while_entered():
    events = []
    with LiveStorageTracker(trace=events):
        a = torch.ones(100)           # 400 B
        b = a + 1                     # 400 B
        view = b[:10]                 # shares b's storage: nothing new
        del a
    keys = [e.id for e in events if type(e) is Alloc]
    assert events == [Alloc(keys[0], 400), Alloc(keys[1], 400), Free(keys[0])]
    del b, view  # after the tracker exited: not part of what it traced
    assert len(events) == 3


def test_placement_copies_each_weight_then_each_buffer_and_channels_last_copies_again():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    # conv weight 8x3x3x3 fp32 = 864 B, conv bias 32 B, BN weight and bias 32 B each; buffers: running
    # mean and var 32 B each, num_batches_tracked one int64
    sizes = [864, 32, 32, 32, 32, 32, 8]
    assert placement_events(model, channels_last=False) == [Alloc(("placed", i), n) for i, n in enumerate(sizes)]
    with_copy = placement_events(model, channels_last=True)
    assert with_copy[:3] == [Alloc(("placed", 0), 864), Alloc(("placed in channels_last", 0), 864),
                             Free(("placed", 0))]
    assert len(with_copy) == len(sizes) + 2  # only the 4-D weight is copied again


def test_adams_state_is_two_tensors_per_parameter_without_its_step_counts():
    step = TrainStep(linear_probe(num_classes=10, image_size=8), OFF)
    x, y = step.batch(4, 8)
    step.train(x, y)
    # one 10 x 192 fp32 weight: exp_avg and exp_avg_sq of 7,680 B each
    assert [e.nbytes for e in optimizer_state_events(step)] == [7680, 7680]
