"""The optimizer a training step uses (training.OPTIMIZERS): its state against torch's own state_dict and
hand-derived sizes, and every memory figure following it (estimate, reserved replay, max batch)."""
import pytest
import torch
import torch.nn as nn

from factories import linear_probe, tiny_cnn
from wavemix_profile.core.errors import BadInputError
from wavemix_profile.measure.memory import CpuEstimator, LiveStorageTracker, _state_tensors, _tensor_bytes
from wavemix_profile.estimate.reserved import kept_state_events
from wavemix_profile.core.results import OPTIMIZER_NAMES, Settings
from wavemix_profile.sources.training import (OPTIMIZERS, StepConfig, TrainStep, optimizer_recipe, optimizer_state_bytes,
                                      param_bytes)

CPU = torch.device("cpu")
# tiny_cnn at 10 classes: conv 3x3x3x8 + 8, BatchNorm 8 + 8, Linear 8x10 + 10 = 322 trainable parameters
TRAINABLE = 3 * 3 * 3 * 8 + 8 + 8 + 8 + 8 * 10 + 10
# fp32 bytes of state per parameter, from each optimizer's documented state: Adam and AdamW keep exp_avg
# and exp_avg_sq, SGD with momentum a momentum_buffer, plain SGD and no optimizer nothing
STATE_BYTES_PER_PARAM = {"adam": 8, "adamw": 8, "sgd": 0, "sgd-momentum": 4, "none": 0}


def config(name: str, **kw) -> StepConfig:
    return StepConfig(device=CPU, amp="off", num_classes=10, optimizer=name, **kw)


def test_the_table_and_the_hand_derived_sizes_name_the_same_optimizers():
    assert set(OPTIMIZERS) == set(STATE_BYTES_PER_PARAM)
    assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES   # the torch-free list the command line offers


@pytest.mark.parametrize("name", sorted(STATE_BYTES_PER_PARAM))
def test_state_bytes_are_the_optimizers_own_state_dict(name):
    torch.manual_seed(0)
    step = TrainStep(tiny_cnn(num_classes=10, image_size=8), config(name))
    assert sum(p.numel() for p in step.model.parameters()) == TRAINABLE
    x, y = step.batch(4, 8)
    step.train(x, y)
    step.train(x, y)
    state = step.optimizer.state_dict()["state"]
    # every state tensor torch keeps, but the step counts (host scalars on a GPU without fused/capturable)
    from_torch = sum(t.numel() * t.element_size() for s in state.values() for key, t in s.items()
                     if key != "step" and isinstance(t, torch.Tensor))
    expected = STATE_BYTES_PER_PARAM[name] * TRAINABLE
    assert from_torch == expected
    assert optimizer_state_bytes(step) == expected
    assert OPTIMIZERS[name].state_bytes(step.model.parameters()) == expected


def test_none_runs_forward_and_backward_but_never_changes_a_weight():
    torch.manual_seed(0)
    step = TrainStep(tiny_cnn(num_classes=10, image_size=8), config("none"))
    before = [p.detach().clone() for p in step.model.parameters()]
    x, y = step.batch(4, 8)
    step.train(x, y)
    assert all(torch.equal(a, p) for a, p in zip(before, step.model.parameters()))
    assert all(p.grad is None for p in step.model.parameters())   # made by backward, then released
    step.model.train()
    nn.functional.cross_entropy(step.model(x), y).backward()
    assert all(p.grad is not None for p in step.model.parameters())


@pytest.mark.parametrize("name", ["adam", "sgd", "sgd-momentum", "none"])
@pytest.mark.parametrize("keep_grads", [False, True])
def test_the_estimate_is_what_tracking_the_real_step_holds(name, keep_grads):
    """The fake estimate against the same tracker around a real step of the same optimizer."""
    cfg = config(name, keep_grads=keep_grads)
    torch.manual_seed(0)
    step = TrainStep(tiny_cnn(num_classes=10, image_size=8), cfg)
    x, y = step.batch(6, 8)
    step.train(x, y)  # warm-up: the optimizer's state, and the kept gradients
    assert len(step.kept_grads()) == (6 if keep_grads else 0)
    tracker = LiveStorageTracker(existing=[*_state_tensors(step), x, y])
    with tracker:
        step.train(x, y)
    real = (param_bytes(step.model) + optimizer_state_bytes(step) + _tensor_bytes(step.kept_grads())
            + _tensor_bytes((x, y)) + tracker.peak_bytes)
    fake = CpuEstimator(lambda: tiny_cnn(num_classes=10, image_size=8), cfg).peak("train", batch=6, image_size=8)
    # Adam reads its step count with .item() on real tensors but keeps it a tensor on fakes: a few scalars apart
    assert abs(fake - real) <= 64 and real > 10_000


def test_lighter_optimizers_hold_less_at_the_peak_by_their_state():
    def peak(name: str, **kw) -> int:
        return CpuEstimator(lambda: linear_probe(num_classes=10, image_size=32), config(name, **kw)).peak(
            "train", batch=4, image_size=32)
    weights = 3 * 32 * 32 * 10 * 4   # one bias-free Linear, fp32
    assert peak("none") < peak("sgd") < peak("sgd-momentum") < peak("adam")
    # the same step's temporaries; the momentum buffer is held throughout
    assert peak("sgd-momentum") - peak("sgd") == weights
    # a kept gradient is held from the start, and backward makes the new one beside it before adding it in
    assert peak("none", keep_grads=True) - peak("none") == weights


def test_the_first_step_makes_the_state_and_kept_gradients_in_the_replay():
    torch.manual_seed(0)
    step = TrainStep(linear_probe(num_classes=10, image_size=8), config("sgd-momentum", keep_grads=True))
    x, y = step.batch(4, 8)
    step.train(x, y)
    weight = 3 * 8 * 8 * 10 * 4
    assert [e.nbytes for e in kept_state_events(step)] == [weight, weight]   # the gradient, the momentum buffer


def test_an_unknown_optimizer_is_refused_naming_the_accepted_ones():
    with pytest.raises(BadInputError, match="unknown optimizer 'lamb'; accepted: adam, adamw, sgd, sgd-momentum, none"):
        optimizer_recipe("lamb")
    from wavemix_profile.measure.measure import validate
    with pytest.raises(BadInputError, match="unknown optimizer"):
        validate(Settings(model="ResNet-18", image_size=32, optimizer="lamb"))
