"""The Python API (measure_model) on real models in this process, and its output: no torch log noise."""
import logging
import subprocess
import sys

import pytest
import torch

from factories import tiny_cnn
from wavemix_profile import measure_model
from wavemix_profile.core.errors import BadInputError
from wavemix_profile.measure.fake_log import FAKE_TENSOR_LOGGER, quiet_fake_errors

# What torch's fake-tensor logger printed for every model instance measured (19 lines of it).
NOISE = ("failed while attempting to run meta", "fake_tensor.py", "Traceback")


def _fails_on_fakes() -> None:
    """An op whose shape check fails under FakeTensorMode: torch logs the traceback, then raises."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    with pytest.raises(RuntimeError), FakeTensorMode():
        torch.mm(torch.empty(2, 3), torch.empty(2, 3))


def test_quiet_fake_errors_drops_torch_s_traceback_log_only_while_inside(caplog):
    caplog.set_level(logging.DEBUG)
    _fails_on_fakes()
    assert "failed while attempting to run meta for aten.mm.default" in caplog.text  # torch's own log
    caplog.clear()
    with quiet_fake_errors():
        _fails_on_fakes()
        logging.getLogger(FAKE_TENSOR_LOGGER).warning("a record without a traceback")
    assert [r.getMessage() for r in caplog.records] == ["a record without a traceback"]
    _fails_on_fakes()  # restored after
    assert "failed while attempting to run meta" in caplog.text
    assert not logging.getLogger(FAKE_TENSOR_LOGGER).filters


def test_a_model_instance_measures_in_this_process_by_default_without_log_noise(capfd, caplog):
    caplog.set_level(logging.DEBUG)
    model = tiny_cnn(num_classes=10, image_size=16)
    before = [p.detach().clone() for p in model.parameters()]
    result = measure_model(model, image_size=16, device="cpu", batch_size=4, skip=("throughput",))
    assert result.ok, result.error
    assert result.params_total == sum(p.numel() for p in model.parameters()) == 330
    assert result.settings.num_classes == 10       # the instance's own head, not the factories' 100
    assert result.model_name == "Sequential" and result.settings.model == "local:Sequential"
    memory = result.memory
    assert memory.method == "cpu-estimate" and memory.batch_size == 4
    # float32 weights, and BatchNorm's buffers: two of 8 floats and its int64 batch count
    assert memory.params_bytes == 330 * 4 + 2 * 8 * 4 + 8 and memory.peak_train_bytes > memory.params_bytes
    assert memory.peak_infer_bytes > 0 and memory.predicted_device_train_bytes > memory.peak_train_bytes
    assert result.max_batch_train.max_batch > 4 and result.flops.forward_macs_per_image > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # measured on copies
    out, err = capfd.readouterr()
    assert not any(n in out + err + caplog.text for n in NOISE), out + err + caplog.text


def test_an_instance_s_class_count_can_still_be_given_and_is_checked():
    with pytest.raises(ValueError, match=r"shape \(2, 10\); expected .* \(2, 7\)"):
        measure_model(tiny_cnn(num_classes=10, image_size=8), image_size=8, device="cpu", num_classes=7,
                      skip=("flops", "memory", "max-batch", "throughput"))


def test_isolated_true_with_an_instance_is_refused_in_one_line_saying_what_to_do():
    with pytest.raises(BadInputError) as refused:
        measure_model(tiny_cnn(num_classes=10, image_size=8), image_size=8, isolated=True)
    message = str(refused.value)
    assert "\n" not in message and "factory" in message and "leave isolated unset" in message


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "wavemix_profile", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_the_cli_prints_no_torch_log_noise(tmp_path):
    """`profile` estimates memory in the CLI's own process: a factory that copies a prebuilt model hits
    the fake-tensor failure there. `compare` measures in children, whose output the CLI keeps."""
    profiled = _cli("profile", "python:factories:copies_an_instance", "--image-size", "16", "--batch-size", "2",
                    "--device", "cpu")
    assert profiled.returncode == 0, profiled.stderr
    assert "copies_an_instance" in profiled.stdout and "Conv2d" in profiled.stdout
    compared = _cli("compare", "--models", "python:factories:tiny_cnn", "python:factories:copies_an_instance", "--image-sizes",
                    "32", "--batch-size", "2", "--skip", "max-batch", "throughput", "--out", str(tmp_path / "out"))
    assert compared.returncode == 0, compared.stderr
    assert "copies_an_instance" in compared.stdout and "tiny_cnn" in compared.stdout
    helped = _cli("compare", "--help")
    assert helped.returncode == 0 and "usage:" in helped.stdout and helped.stderr == ""
    for run in (profiled, compared, helped):
        assert not any(n in run.stdout + run.stderr for n in NOISE), run.stderr
