"""The measuring core on the CPU: validation, the memory estimate, throughput, one in-process run."""
import pytest
import torch

from factories import linear_probe, tiny_cnn
from wavemix_profile.core.errors import BadInputError
from wavemix_profile.measure.measure import measure, parse_device, validate
from wavemix_profile.measure.memory import estimate_cpu_peaks
from wavemix_profile.models import UnknownModelError, UnsupportedImageSizeError
from wavemix_profile.core.results import Settings
from wavemix_profile.measure.throughput import (TimedBlocks, TimingSettings, block_rates, first_block_calls, images_per_s,
                                        measure_throughput, more_block_calls, time_blocks)
from wavemix_profile.sources.training import StepConfig, TrainStep

CPU = torch.device("cpu")


def build_linear(size=8, classes=10):
    return lambda: linear_probe(num_classes=classes, image_size=size)


def test_inference_estimate_is_params_input_and_output_bytes():
    # Linear(192 -> 10, no bias) in fp32: weight 1920*4 B, input 4*192*4 B, logits 4*10*4 B; flatten is a view.
    est = estimate_cpu_peaks(build_linear(), StepConfig(device=CPU, amp="off", num_classes=10), batch=4, image_size=8)
    assert est.params_bytes == 1920 * 4
    assert est.infer_bytes == 1920 * 4 + 4 * 192 * 4 + 4 * 10 * 4


def test_train_estimate_holds_weights_grads_adam_state_and_grows_with_batch():
    config = StepConfig(device=CPU, amp="off", num_classes=10)
    small = estimate_cpu_peaks(build_linear(), config, batch=4, image_size=8)
    big = estimate_cpu_peaks(build_linear(), config, batch=8, image_size=8)
    assert small.grads_bytes == 1920 * 4
    assert small.optimizer_state_bytes == 2 * 1920 * 4   # exp_avg, exp_avg_sq (the step count is the host's)
    floor = small.params_bytes + small.grads_bytes + small.optimizer_state_bytes + 4 * 192 * 4
    assert small.train_bytes > floor
    # four more images: at least their pixels (fp32) and labels (int64) more
    assert big.train_bytes - small.train_bytes >= 4 * 192 * 4 + 4 * 8


def test_amp_halves_activation_bytes_of_a_conv_net():
    """Per image, an inference pass's peak holds the fp32 input (3x16x16x4 = 3,072 B) and two conv
    outputs (64x16x16 each); fp16 autocast halves the conv outputs, not the input."""
    def build():
        return torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.Conv2d(64, 64, 3, padding=1),
                                   torch.nn.Flatten(), torch.nn.Linear(64 * 16 * 16, 10))

    def per_image(amp):  # the growth of the peak from 16 to 32 images: what one more image costs
        config = StepConfig(device=CPU, amp=amp, num_classes=10)
        small, big = (estimate_cpu_peaks(build, config, batch=b, image_size=16).infer_bytes for b in (16, 32))
        return (big - small) // 16

    image = 3 * 16 * 16 * 4
    off, half = per_image("off"), per_image("fp16")
    assert off == image + 2 * 64 * 16 * 16 * 4         # 134,144 B
    assert half == image + 2 * 64 * 16 * 16 * 2        # 68,608 B
    assert half - image == (off - image) // 2


def test_throughput_reports_median_and_cv():
    settings = TimingSettings(batch_size=8, iterations=2, repeats=3)
    rates = block_rates(TimedBlocks([1.0, 2.0, 4.0]), settings)
    assert rates == [16.0, 8.0, 4.0]          # 16 images per block
    rate, cv = images_per_s(rates)
    assert rate == 8.0
    assert cv == pytest.approx(0.5345225, rel=1e-6)   # rates 16, 8, 4: pstdev 4.989 / mean 9.333


@pytest.mark.parametrize("call_s, iterations, min_block_s, calls", [
    (0.004, 1, 0.02, 5),      # 5 calls at the warm-up's pace of 4 ms make 20 ms
    (0.003, 1, 0.02, 7),      # 6 would make 18 ms: rounded up
    (0.03, 1, 0.02, 1),       # one slow call already lasts longer than a block
    (0.001, 10, 0.002, 10),   # never fewer than the iterations asked for
    (0.004, 3, None, 3),      # no minimum: the iterations asked for
    (None, 3, 0.02, 3),       # no warm-up call to pace: the iterations, the first block checks them
])
def test_the_warm_up_pace_sets_the_first_calls_per_block(call_s, iterations, min_block_s, calls):
    settings = TimingSettings(batch_size=2, warmup=1, iterations=iterations, min_block_s=min_block_s)
    assert first_block_calls(call_s, settings) == calls


@pytest.mark.parametrize("calls, block_s, grown", [
    (1, 0.004, 5),     # a 4 ms block of one call: 5 calls make 20 ms
    (5, 0.019, 6),     # 5 calls in 19 ms: 20 ms takes 5.26 of them, rounded up to 6
    (5, 0.0199, 6),    # just short: at least one more call
    (3, 0.0, 6),       # a block the clock could not see: double
])
def test_a_short_block_grows_the_calls_to_its_pace(calls, block_s, grown):
    settings = TimingSettings(batch_size=2, iterations=1, min_block_s=0.02)
    assert more_block_calls(calls, block_s, settings) == grown


class _ScriptedCalls:
    """run() for time_blocks on a fake clock: call i advances the clock by the i-th scripted seconds
    (the last one repeating), so block lengths are exact."""

    def __init__(self, seconds: list[float]):
        self.seconds, self.now, self.calls = seconds, 0.0, 0

    def __call__(self) -> None:
        self.now += self.seconds[min(self.calls, len(self.seconds) - 1)]
        self.calls += 1

    def clock(self) -> float:
        return self.now


class _ClockMeter:
    """An energy meter drawing 1 W on the scripted clock: its joules are the seconds it was started for."""

    def __init__(self, run: _ScriptedCalls):
        self.run, self.began = run, None

    def start(self) -> None:
        self.began = self.run.now

    def stop(self) -> float:
        used, self.began = self.run.now - self.began, None
        return used


def test_a_cold_warm_up_call_too_slow_to_pace_the_blocks_is_corrected_by_the_first_block():
    # the warm-up call takes 2 s (cold), then every call 0.25 s: 1 call per block from the warm-up's
    # pace, whose block (0.25 s) falls short of 1 s; 4 calls then, and every kept block lasts 1 s
    run = _ScriptedCalls([2.0, 0.25])
    settings = TimingSettings(batch_size=2, warmup=1, iterations=1, repeats=3, min_block_s=1.0)
    meter = _ClockMeter(run)
    blocks = time_blocks(run, settings, CPU, meter, clock=run.clock)
    assert blocks.iterations == 4 and blocks.seconds == [1.0, 1.0, 1.0]
    assert run.calls == 1 + 1 + 3 * 4           # warm-up, the short block, the kept blocks
    assert blocks.joules == 3.0                 # the meter covers the kept blocks and nothing else


def test_a_short_block_after_good_ones_starts_the_blocks_over_with_more_calls():
    # pace 0.5 s: 2 calls per block; the first block lasts 1 s, the second (two 0.25 s calls) 0.5 s,
    # so 4 calls per block from there, and the blocks start over
    run = _ScriptedCalls([0.5, 0.5, 0.5, 0.25, 0.25, 0.5])
    settings = TimingSettings(batch_size=2, warmup=1, iterations=1, repeats=3, min_block_s=1.0)
    blocks = time_blocks(run, settings, CPU, _ClockMeter(run), clock=run.clock)
    assert blocks.iterations == 4 and blocks.seconds == [2.0, 2.0, 2.0]
    assert run.calls == 1 + 2 + 2 + 3 * 4
    assert blocks.joules == 6.0


def test_without_a_minimum_blocks_run_the_iterations_asked_for_however_short():
    run = _ScriptedCalls([1.0, 0.001])
    settings = TimingSettings(batch_size=2, warmup=2, iterations=3, repeats=2, min_block_s=None)
    blocks = time_blocks(run, settings, CPU, clock=run.clock)
    assert blocks.iterations == 3 and blocks.seconds == pytest.approx([0.003, 0.003])
    assert run.calls == 2 + 2 * 3


def test_throughput_result_keeps_every_block():
    step = TrainStep(tiny_cnn(num_classes=10, image_size=16), StepConfig(device=CPU, amp="off", num_classes=10))
    timing = TimingSettings(batch_size=2, warmup=1, iterations=1, repeats=4, min_block_s=0.01)
    result = measure_throughput(step, timing, image_size=16)
    for mode in ("train", "infer"):
        rates = getattr(result, f"{mode}_block_images_per_s")
        assert len(rates) == 4
        assert getattr(result, f"{mode}_images_per_s") == pytest.approx((sorted(rates)[1] + sorted(rates)[2]) / 2)
        assert getattr(result, f"{mode}_block_iterations") >= 1
    assert result.min_block_s == 0.01


def test_warm_up_calibration_and_blocks_all_run_alone():
    import contextlib
    step = TrainStep(tiny_cnn(num_classes=10, image_size=16), StepConfig(device=CPU, amp="off", num_classes=10))
    inside, calls = [False], []
    for mode in ("train", "infer"):
        def logged(*args, run=getattr(step, mode), mode=mode, **kwargs):
            calls.append((mode, inside[0]))
            return run(*args, **kwargs)
        setattr(step, mode, logged)

    @contextlib.contextmanager
    def alone():
        inside[0] = True
        yield
        inside[0] = False
    timing = TimingSettings(batch_size=2, warmup=2, iterations=1, repeats=3, min_block_s=None)
    measure_throughput(step, timing, image_size=16, alone=alone)
    # each mode's warm-up, then its blocks (3 of 1 call), all inside
    assert calls == [("train", True)] * (2 + 3) + [("infer", True)] * (2 + 3)


def test_throughput_on_cpu_times_bf16_when_fp16_is_asked():
    step = TrainStep(tiny_cnn(num_classes=10, image_size=16), StepConfig(device=CPU, amp="fp16", num_classes=10))
    result = measure_throughput(step, TimingSettings(batch_size=4, warmup=1, iterations=2, repeats=2), image_size=16)
    assert result.precision == "bf16" and result.timer == "wall-clock"
    assert result.train_images_per_s > 0 and result.infer_images_per_s > 0
    assert result.threads == torch.get_num_threads()


@pytest.mark.parametrize("settings, error, words", [
    (Settings(model="ResNet-18", image_size=32, batch_size=0), BadInputError, "batch size"),
    (Settings(model="ResNet-18", image_size=32, device="tpu"), BadInputError, "cpu, cuda, cuda:N"),
    (Settings(model="ResNet-18", image_size=32, amp="fp8"), BadInputError, "fp16, bf16, off"),
    (Settings(model="ResNet-19", image_size=32), UnknownModelError, "ResNet-18"),
    (Settings(model="WaveMix-16/5", image_size=96), UnsupportedImageSizeError, "WaveMix-16/5"),
    (Settings(model="torchvision:resnet5", image_size=32), BadInputError, "resnet50"),
    (Settings(model="python:factories:nope", image_size=32), BadInputError, "python:factories:nope"),
])
def test_bad_requests_fail_before_running(settings, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(")):
        validate(settings)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(BadInputError, match="CUDA is not available"):
        parse_device("cuda")


def test_measure_in_process_fills_every_field_asked_for():
    settings = Settings(model="python:factories:tiny_cnn", image_size=16, batch_size=4, num_classes=10,
                        throughput_batch_size=2, warmup_steps=1, timed_iterations=1, repeats=2,
                        skip=("max-batch",))
    result = measure(settings)
    assert result.ok and result.model_name == "tiny_cnn"
    assert result.params_total == 3 * 8 * 9 + 8 + 16 + 8 * 10 + 10
    assert result.flops.forward_macs_per_image == 16 * 16 * 8 * 27 + 8 * 10
    assert result.memory.method == "cpu-estimate" and result.memory.batch_size == 4
    assert result.throughput.batch_size == 2 and result.throughput.repeats == 2
    assert result.max_batch_train is None
    assert result.environment.device_name.startswith("CPU")


def test_estimate_works_for_models_whose_initialiser_reads_values():
    # CCT initialises its positional embedding with trunc_normal_, which fake tensors cannot run
    from wavemix_profile.models import create_model
    est = estimate_cpu_peaks(lambda: create_model("CCT-128/4x4", num_classes=10, image_size=32),
                             StepConfig(device=CPU, amp="fp16", num_classes=10), batch=4, image_size=32)
    params = sum(p.numel() for p in create_model("CCT-128/4x4", num_classes=10, image_size=32).parameters())
    assert est.params_bytes >= params * 4 and est.train_bytes > est.params_bytes * 4


def test_measure_model_takes_a_factory_in_process():
    from wavemix_profile import measure_model
    result = measure_model(tiny_cnn, image_size=16, isolated=False, num_classes=10, batch_size=4,
                           device="cpu", skip=("flops", "max-batch", "throughput"))
    assert result.settings.model == "python:factories:tiny_cnn"
    assert result.params_total == 3 * 8 * 9 + 8 + 16 + 8 * 10 + 10 and result.memory.batch_size == 4


def test_measure_model_refuses_a_lambda():
    from wavemix_profile import measure_model
    with pytest.raises(BadInputError, match="module-level function"):
        measure_model(lambda **kw: tiny_cnn(**kw))


def test_torchvision_and_timm_specs_build():
    from wavemix_profile.sources.sources import resolve_source
    tv = resolve_source("torchvision:resnet18").build(num_classes=1000, image_size=224)
    assert sum(p.numel() for p in tv.parameters()) == 11_689_512   # torchvision's documented count
    tm = resolve_source("timm:resnet18").build(num_classes=1000, image_size=224)
    assert sum(p.numel() for p in tm.parameters()) == 11_689_512


def test_fake_tensor_estimate_equals_tracking_the_real_step():
    # The estimate runs on fake tensors; the same tracker around a real step must see the same bytes.
    from wavemix_profile.measure.memory import CpuEstimator, LiveStorageTracker, _state_tensors, _tensor_bytes
    from wavemix_profile.sources.training import param_bytes
    config = StepConfig(device=CPU, amp="bf16", num_classes=10)
    torch.manual_seed(0)
    step = TrainStep(tiny_cnn(num_classes=10, image_size=16), config)
    x, y = step.batch(6, 16)
    step.train(x, y)  # warm-up: Adam state
    tracker = LiveStorageTracker(existing=[*_state_tensors(step), x, y])
    with tracker:
        step.train(x, y)
    from wavemix_profile.sources.training import optimizer_state_bytes
    real = param_bytes(step.model) + optimizer_state_bytes(step) + _tensor_bytes((x, y)) + tracker.peak_bytes
    fake = CpuEstimator(lambda: tiny_cnn(num_classes=10, image_size=16), config).peak("train", batch=6, image_size=16)
    # Adam reads its step count with .item() on real tensors but keeps it a tensor on fakes, so the
    # two differ by a few scalar temporaries (32 bytes here), nothing more.
    assert abs(fake - real) <= 64 and real > 100_000


def test_inference_recording_autograd_keeps_what_backward_would_need():
    """Linear, tanh, Linear, tanh, Linear at width 256, batch 8, float32. Under inference_mode each
    activation goes as soon as the next op has used it: the peak is two of them (2 x 8,192 B).
    Recording the graph keeps the first tanh's output (saved by tanh and by the next Linear) while
    the second pair is alive: one activation (8,192 B) more."""
    import torch.nn as nn
    from wavemix_profile.measure.memory import CpuEstimator
    from wavemix_profile.sources.training import StepConfig

    def build():
        return nn.Sequential(nn.Flatten(), nn.Linear(768, 256, bias=False), nn.Tanh(),
                             nn.Linear(256, 256, bias=False), nn.Tanh(), nn.Linear(256, 10, bias=False))

    def infer(mode):
        config = StepConfig(device=torch.device("cpu"), amp="off", num_classes=10, inference=mode)
        return CpuEstimator(build, config).peak("infer", batch=8, image_size=16)

    weights, batch, activation = (768 * 256 + 256 * 256 + 256 * 10) * 4, 8 * 768 * 4, 8 * 256 * 4
    assert infer("inference_mode") == weights + batch + 2 * activation
    assert infer("autograd") == weights + batch + 3 * activation


def test_an_unknown_inference_mode_is_refused():
    from wavemix_profile.core.errors import BadInputError
    from wavemix_profile.measure.measure import validate
    with pytest.raises(BadInputError, match="unknown inference mode 'eager'; accepted: inference_mode, autograd"):
        validate(Settings(model="ResNet-18", image_size=32, inference="eager"))


def test_a_notebook_s_local_factory_or_model_instance_measures_in_this_process():
    import torch.nn as nn
    from wavemix_profile import measure_model

    def local(*, num_classes, image_size):
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * image_size * image_size, num_classes))

    quick = dict(batch_size=2, num_classes=10, skip=("flops", "max-batch", "throughput"))
    by_factory = measure_model(local, image_size=8, isolated=False, **quick)
    by_instance = measure_model(local(num_classes=10, image_size=8), image_size=8, isolated=False, **quick)
    assert by_factory.ok and by_instance.ok, (by_factory.error, by_instance.error)
    assert by_factory.params_total == by_instance.params_total == 3 * 64 * 10 + 10
    assert by_factory.memory.peak_train_bytes == by_instance.memory.peak_train_bytes > 0
    assert by_factory.model_name.endswith("local") and by_instance.model_name == "Sequential"
    with pytest.raises(BadInputError, match="measure it in this process with isolated=False"):
        measure_model(local, image_size=8)


def test_a_failing_stage_keeps_what_the_other_stages_measured():
    result = measure(Settings(model="python:factories:fails_above_32", image_size=8, batch_size=64, num_classes=10,
                              memory_budget_bytes=16 * 2**30, throughput_batch_size=2, warmup_steps=1,
                              timed_iterations=1, repeats=1))
    assert not result.ok
    assert result.error.startswith("memory: RuntimeError: cannot take 64 images; max-batch (train): RuntimeError: "
                                   "cannot take ")
    assert result.params_total == 3 * 8 * 9 + 8 + 16 + 8 * 10 + 10
    assert result.flops is not None and result.throughput.train_images_per_s > 0
    assert result.memory is None and result.max_batch_train is None
