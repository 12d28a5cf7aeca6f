"""One definition of the inference peak, for the measurement, the max-batch probe and the CPU estimate.

The CUDA measurement and probe run here with LiveStorageCounter standing in for the CUDA allocator's
statistics: every tensor storage made inside it and still alive, the same tracker the CPU estimate
uses on fake tensors. Built inside the counter, the model's weights count, as on a GPU.
"""
import pytest
import torch

from factories import linear_probe, tiny_cnn
from wavemix_profile.measure.memory import (CpuEstimator, LiveStorageCounter, LiveStorageTracker, _tensor_bytes,
                                    measure_step_peaks)
from wavemix_profile.measure.probes import probe_peak
from wavemix_profile.sources.training import StepConfig, TrainStep, optimizer_state_bytes, param_bytes

CPU = torch.device("cpu")


def build_tiny():
    return tiny_cnn(num_classes=10, image_size=16)


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_estimated_inference_is_weights_input_and_what_a_fresh_models_pass_holds(amp):
    config = StepConfig(device=CPU, amp=amp, num_classes=10)
    torch.manual_seed(0)
    step = TrainStep(build_tiny(), config)  # fresh: no gradients, no Adam state
    x, _ = step.batch(6, 16)
    tracker = LiveStorageTracker(existing=[*step.model.parameters(), *step.model.buffers(), x])
    with tracker:
        step.infer(x)
    real = param_bytes(step.model) + _tensor_bytes((x,)) + tracker.peak_bytes
    estimator = CpuEstimator(build_tiny, config)
    assert estimator.peak("infer", batch=6, image_size=16) == real
    estimator.peak("train", batch=6, image_size=16)  # now the fake Adam state exists...
    assert estimator.peak("infer", batch=6, image_size=16) == real  # ...and is not counted
    assert optimizer_state_bytes(estimator.step) > 0 and tracker.peak_bytes > 0


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_measurement_after_a_training_step_counts_inference_as_the_estimate_does(amp):
    config = StepConfig(device=CPU, amp=amp, num_classes=10)
    with LiveStorageCounter() as counter:
        step = TrainStep(build_tiny(), config)
        memory = measure_step_peaks(step, counter, batch=6, image_size=16, warmup_steps=1, method="stand-in")
    estimator = CpuEstimator(build_tiny, config)
    assert memory.peak_infer_bytes == estimator.peak("infer", batch=6, image_size=16)
    # Adam reads its step count with .item() on real tensors but keeps it a tensor on fakes: a few
    # scalar temporaries apart in training, nothing more.
    assert abs(memory.peak_train_bytes - estimator.peak("train", batch=6, image_size=16)) <= 64
    # 330 parameters in 6 tensors: Adam's exp_avg and exp_avg_sq (fp32), freed before the inference pass;
    # its step counts are not device memory (on a GPU, Adam keeps them on the host)
    assert memory.grads_bytes == 330 * 4 and memory.optimizer_state_bytes == 2 * 330 * 4


def test_measured_inference_leaves_out_adams_state_labels_and_gradients():
    # Linear(192 -> 10, no bias), fp32, batch 4: weight 7,680 B; input 3,072 B; logits 160 B.
    # Adam's state (15,360 B on the device) and the labels (32 B) from the training step must not be in it.
    config = StepConfig(device=CPU, amp="off", num_classes=10)
    with LiveStorageCounter() as counter:
        step = TrainStep(linear_probe(num_classes=10, image_size=8), config)
        memory = measure_step_peaks(step, counter, batch=4, image_size=8, warmup_steps=2, method="stand-in")
    assert memory.peak_infer_bytes == 1920 * 4 + 4 * 192 * 4 + 4 * 10 * 4
    assert memory.optimizer_state_bytes == 2 * 1920 * 4


def test_inference_probe_after_training_probes_counts_the_same():
    config = StepConfig(device=CPU, amp="bf16", num_classes=10)
    estimator = CpuEstimator(build_tiny, config)
    with LiveStorageCounter() as counter:
        step = TrainStep(build_tiny(), config)
        train = probe_peak(step, "train", batch=6, image_size=16, counter=counter)
        infer = probe_peak(step, "infer", batch=6, image_size=16, counter=counter)
    assert infer == estimator.peak("infer", batch=6, image_size=16)
    assert abs(train - estimator.peak("train", batch=6, image_size=16)) <= 64
    assert not step.optimizer.state  # the inference probe dropped what training left


def test_sampled_device_memory_keeps_the_largest_reading_of_each_pass():
    # A device-level reading (NVML's, on a GPU) that is high only during training: the first two
    # readings belong to the training window (its entry and, at the latest, its exit).
    readings = iter([3_000, 9_000])

    def used():
        return next(readings, 4_000)

    config = StepConfig(device=CPU, amp="off", num_classes=10)
    with LiveStorageCounter() as counter:
        step = TrainStep(build_tiny(), config)
        memory = measure_step_peaks(step, counter, batch=2, image_size=16, warmup_steps=1, method="stand-in",
                                    device_used=used)
    assert (memory.nvml_peak_train_bytes, memory.nvml_peak_infer_bytes) == (9_000, 4_000)
    assert memory.nvml_train_bytes is None  # the single after-step reading is no longer taken
