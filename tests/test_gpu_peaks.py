"""GPU peak lookup: exact names after normalisation, every table entry against its datasheet figure."""
import pytest

from wavemix_profile.core.gpu_peaks import normalise_name
from wavemix_profile.core.gpus import CARDS, peak_flops_per_s

T = 1e12
# Each name as torch.cuda.get_device_name reports it, with its dense datasheet figures in TFLOP/s:
# (fp16 tensor, bf16 tensor or None where the tensor cores have no bf16, fp32).
DATASHEET = {
    "NVIDIA H100 80GB HBM3": (989.5, 989.5, 67),     # 1,979 with sparsity
    "NVIDIA H100 PCIe": (756.5, 756.5, 51),          # 1,513 with sparsity
    "NVIDIA H200": (989.5, 989.5, 67),
    "NVIDIA A100-SXM4-80GB": (312, 312, 19.5),
    "NVIDIA A100-SXM4-40GB": (312, 312, 19.5),
    "NVIDIA A100 80GB PCIe": (312, 312, 19.5),
    "NVIDIA A100-PCIE-40GB": (312, 312, 19.5),
    "Tesla V100-SXM2-16GB": (125, None, 15.7),
    "Tesla V100-SXM2-32GB": (125, None, 15.7),
    "Tesla V100-PCIE-16GB": (112, None, 14),
    "Tesla V100-PCIE-32GB": (112, None, 14),
    "Tesla V100S-PCIE-32GB": (130, None, 16.4),
    "Tesla T4": (65, None, 8.1),
    "NVIDIA L4": (121, 121, 30.3),                    # 242 with sparsity
    "NVIDIA L40": (181.05, 181.05, 90.5),
    "NVIDIA L40S": (362.05, 362.05, 91.6),
    "NVIDIA A10": (125, 125, 31.2),
    "NVIDIA RTX A6000": (154.85, 154.85, 38.7),       # 309.7 with sparsity
    "NVIDIA GeForce RTX 4090": (165.2, 165.2, 82.6),
    "NVIDIA GeForce RTX 3090": (71, 71, 35.6),
}


def test_every_table_entry_has_a_datasheet_check():
    assert {card.device_name for card in CARDS if card.peak} == set(DATASHEET)


@pytest.mark.parametrize("name", sorted(DATASHEET))
def test_each_card_gets_its_own_datasheet_peak(name):
    fp16, bf16, fp32 = DATASHEET[name]
    assert peak_flops_per_s(name, "fp16") == pytest.approx(fp16 * T)
    assert peak_flops_per_s(name, "bf16") == (None if bf16 is None else pytest.approx(bf16 * T))
    assert peak_flops_per_s(name, "fp32") == pytest.approx(fp32 * T)


@pytest.mark.parametrize("name, expected_fp16_tflops", [
    ("NVIDIA L40", 181.05),              # not the L4's 121: a substring match gave it the L4's figure
    ("NVIDIA L40S", 362.05),
    ("NVIDIA L4", 121),
    ("NVIDIA A100-SXM4-40GB", 312),      # both A100 memory sizes
    ("NVIDIA A100-SXM4-80GB", 312),
    ("NVIDIA H100 PCIe", 756.5),         # not the SXM part
    ("NVIDIA H100 NVL", None),           # not silently the SXM part: its datasheet figure is left out
    ("NVIDIA H200 NVL", None),
    ("NVIDIA A10G", None),               # not the A10: AWS's part, no NVIDIA datasheet
    ("NVIDIA H100", None),               # no such name: which H100?
    ("NVIDIA GeForce RTX 4090 D", None),
    ("NVIDIA GeForce RTX 3090 Ti", None),
    ("AMD Instinct MI300X", None),
    ("CPU: AMD EPYC 7B13", None),
    ("", None),
])
def test_near_misses_are_not_matched(name, expected_fp16_tflops):
    got = peak_flops_per_s(name, "fp16")
    assert got == (None if expected_fp16_tflops is None else pytest.approx(expected_fp16_tflops * T))


@pytest.mark.parametrize("spelling", ["nvidia a100-sxm4-80gb", "NVIDIA  A100 SXM4 80GB", "A100_SXM4_80GB",
                                      " NVIDIA A100-SXM4-80GB "])
def test_case_spaces_punctuation_and_brand_words_do_not_count(spelling):
    assert normalise_name(spelling) == "a100 sxm4 80gb"
    assert peak_flops_per_s(spelling, "bf16") == pytest.approx(312 * T)


def test_brand_words_are_dropped_only_in_front():
    assert normalise_name("NVIDIA GeForce RTX 4090") == "rtx 4090"
    assert normalise_name("Tesla T4") == "t4"
    assert normalise_name("NVIDIA RTX A6000") == "rtx a6000"


def test_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match="fp16, bf16, fp32"):
        peak_flops_per_s("NVIDIA L4", "fp8")


# --- wiring: measure looks the peak up by the environment's device name -------------------------------

def tiny_settings(**kw):
    from wavemix_profile.core.results import Settings
    return Settings(model="python:factories:tiny_cnn", image_size=16, batch_size=4, num_classes=10,
                    throughput_batch_size=2, warmup_steps=1, timed_iterations=1, repeats=2, **kw)


@pytest.mark.parametrize("device_name, amp, peak_tflops", [
    ("NVIDIA H100 80GB HBM3", "fp16", 989.5),   # fp16 asked; the CPU times bf16, the bf16 peak applies
    ("NVIDIA L40", "off", 90.5),                # no autocast: the fp32 peak
    ("Tesla V100-SXM2-16GB", "fp16", None),     # timed as bf16 here, which a V100's tensor cores lack
])
def test_throughput_stage_turns_the_device_name_into_mfu(device_name, amp, peak_tflops):
    from factories import tiny_cnn
    from wavemix_profile.measure.measure import _throughput
    from wavemix_profile.core.results import FlopsResult
    from wavemix_profile.sources.training import StepConfig
    settings = tiny_settings(amp=amp)
    flops = FlopsResult(forward_macs_per_image=500, forward_flops_per_image=1_000, train_step_flops_per_image=3_700,
                        uncounted_ops=(), fvcore_macs_per_image=None, fvcore_unsupported_ops=(), convention="")
    timing = _throughput(lambda: tiny_cnn(num_classes=10, image_size=16), StepConfig.of(settings), settings, flops,
                         device_name=device_name)
    if peak_tflops is None:
        assert timing.train_mfu is None and timing.infer_mfu is None and timing.train_images_per_s > 0
        return
    assert timing.train_mfu == pytest.approx(timing.train_images_per_s * 3_700 / (peak_tflops * T))
    assert timing.infer_mfu == pytest.approx(timing.infer_images_per_s * 1_000 / (peak_tflops * T))


def test_measure_on_the_cpu_has_no_mfu():
    from wavemix_profile.measure.measure import measure
    result = measure(tiny_settings(skip=("memory", "max-batch")))
    assert result.environment.device_name.startswith("CPU")
    assert result.flops.train_step_flops_per_image > 0 and result.throughput.train_images_per_s > 0
    assert result.throughput.train_mfu is None and result.throughput.infer_mfu is None
