"""Estimates drawn from two recordings (extrapolation.py, CpuEstimator.extrapolate) and the max-batch
search that runs on them: byte for byte what a fake step at that batch gives, or nothing; and the
optimizer step replayed from a recording in later fake steps, byte for byte the step run.

The oracle is CpuEstimator.estimate at the same batch: a fake step really run (with
replay_updates=False, its optimizer step too).
"""
import dataclasses

import pytest
import torch
import torch.nn as nn

from wavemix_profile.estimate.allocator import Alloc, Free
from wavemix_profile.estimate.extrapolation import RecordedStep, RecordedUpdate, StepLine
from wavemix_profile.measure.memory import CpuEstimator, LiveStorageTracker, cpu_memory_result
from wavemix_profile.measure.probes import search_max_batch
from wavemix_profile.estimate.reserved import StepRecording
from wavemix_profile.core.results import Settings
from wavemix_profile.sources.sources import resolve_source
from wavemix_profile.sources.training import StepConfig

# one xdist worker runs this module (make test's --dist loadgroup), so that its module-scoped fixtures,
# each zoo model's estimator, are made once rather than on each worker
pytestmark = pytest.mark.xdist_group("replay")

CPU = torch.device("cpu")
ZOO = ["ResNet-18", "WaveMix-16/5", "ViT-128/4x4", "ConvMixer-256/8", "CCT-128/4x4"]


# --- the line through two hand-made recordings ----------------------------------------------------

def recorded(batch: int, *, base: int = 0, scalar_bytes: int = 64, optimizer_step_at: int = 3,
             swap_frees: bool = False, step_peak_bytes=None) -> RecordedStep:
    """A step at `batch` whose storage ids start at `base` (addresses differ between runs) and whose
    first activation's address is reused by the next: 100 B and 10 B an image, and a scalar."""
    x, y, act, scalar = base + 1, base + 2, base + 3, base + 4
    frees = [Free(scalar), Free(act)] if swap_frees else [Free(act), Free(scalar)]
    rec = StepRecording(batch=[Alloc(x, 12 * batch), Alloc(y, 8 * batch)],
                        step=[Alloc(act, 100 * batch), Alloc(scalar, scalar_bytes), Free(act),
                              Alloc(act, 10 * batch), *frees],
                        labels_id=y, optimizer_step_at=optimizer_step_at)
    peak = 100 * batch + scalar_bytes if step_peak_bytes is None else step_peak_bytes
    return RecordedStep(rec, allocated_bytes=1000 + 20 * batch + peak, step_peak_bytes=peak)


def test_the_line_gives_the_recording_at_any_batch_with_storages_named_by_their_alloc():
    line = StepLine.through((2, recorded(2, base=50)), (6, recorded(6, base=900)))
    rec, allocated = line.at(40)
    assert rec.batch == [Alloc(0, 480), Alloc(1, 320)] and rec.labels_id == 1
    # the reused address is a new storage: named apart, as the allocator must see it
    assert rec.step == [Alloc(2, 4000), Alloc(3, 64), Free(2), Alloc(4, 400), Free(4), Free(3)]
    assert rec.optimizer_step_at == 3
    assert allocated == recorded(40).allocated_bytes == 1000 + 20 * 40 + 4064
    assert line.at(2)[1] == recorded(2).allocated_bytes and line.at(1)[1] == recorded(1).allocated_bytes


def test_recordings_that_do_not_align_give_no_line():
    low = (2, recorded(2))
    assert StepLine.through(low, (6, recorded(6, base=7))) is not None
    assert StepLine.through(low, (2, recorded(2, base=7))) is None                       # one batch
    assert StepLine.through(low, (6, recorded(6, optimizer_step_at=2))) is None
    assert StepLine.through(low, (6, recorded(6, swap_frees=True))) is None
    assert StepLine.through(low, (6, recorded(6, step_peak_bytes=600 + 64 + 1))) is None  # peak elsewhere
    other_labels = recorded(6)
    other_labels.recording.labels_id = 1
    assert StepLine.through(low, (6, other_labels)) is None
    extra = recorded(6)
    extra.recording.step.append(Alloc(99, 8))
    assert StepLine.through(low, (6, extra)) is None
    freed_twice = recorded(6)
    freed_twice.recording.step.append(Free(4))
    assert StepLine.through(low, (6, freed_twice)) is None


def test_no_recording_where_a_size_is_not_whole_bytes_or_below_zero():
    shrinking = StepLine.through((2, recorded(2)), (5, recorded(5, scalar_bytes=61)))  # 1 B less an image
    assert shrinking.at(66)[0].step[1] == Alloc(3, 0)
    assert shrinking.at(67) is None
    odd = StepLine.through((2, recorded(2)), (5, recorded(5, scalar_bytes=66)))        # 2 B over 3 images
    assert odd.at(8)[0].step[1] == Alloc(3, 68)
    assert odd.at(3) is None


# --- the estimator's recordings -------------------------------------------------------------------

@pytest.fixture(scope="module", params=ZOO)
def zoo(request):
    source = resolve_source(request.param)
    return CpuEstimator(lambda: source.build(num_classes=100, image_size=32), StepConfig(device=CPU))


@pytest.mark.parametrize("mode", ["train", "infer"])
def test_extrapolated_estimates_are_fake_steps_byte_for_byte(zoo, mode):
    assert zoo.extrapolate(mode, batch=40, image_size=32) is None
    zoo.estimate(mode, batch=64, image_size=32)
    assert zoo.extrapolate(mode, batch=40, image_size=32) is None   # one recording draws no line
    zoo.estimate(mode, batch=2, image_size=32, warmup_steps=1)      # the warm-up only changes the replay
    for batch, warmup_steps in [(3, 2), (40, 2), (5000, 1)]:
        guessed = zoo.extrapolate(mode, batch=batch, image_size=32, warmup_steps=warmup_steps)
        assert guessed == zoo.estimate(mode, batch=batch, image_size=32, warmup_steps=warmup_steps), batch
    assert zoo.extrapolate(mode, batch=40, image_size=16) is None   # recorded at 32 px only


class BranchesOnBatch(nn.Module):
    """A linear probe that runs one operator more above 8 images."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        x = x.flatten(1)
        if x.shape[0] > 8:
            x = x * 2
        return self.fc(x)


@pytest.mark.parametrize("mode", ["train", "infer"])
def test_a_model_that_branches_on_its_batch_gives_no_extrapolation_across_the_branch(mode):
    estimator = CpuEstimator(BranchesOnBatch, StepConfig(device=CPU, num_classes=10))
    for batch in (2, 4):
        estimator.estimate(mode, batch=batch, image_size=8)
    assert estimator.extrapolate(mode, batch=6, image_size=8) == estimator.estimate(mode, batch=6, image_size=8)
    estimator.estimate(mode, batch=16, image_size=8)   # the two largest, 6 and 16, straddle the branch
    assert estimator.extrapolate(mode, batch=7, image_size=8) is None
    assert estimator.extrapolate(mode, batch=40, image_size=8) is None


# --- the optimizer step, replayed ----------------------------------------------------------------

def test_an_update_is_kept_only_where_its_storages_are_its_own():
    own = [Alloc(7, 40), Alloc(8, 40), Free(7), Alloc(7, 16), Free(8), Free(7)]
    update = RecordedUpdate.of(own, with_grads=(True, False))
    # named by the order they were made in: the reused address 7 is a third storage
    assert update.events == (Alloc(0, 40), Alloc(1, 40), Free(0), Alloc(2, 16), Free(1), Free(2))
    assert update.with_grads == (True, False)
    assert RecordedUpdate.of([Alloc(7, 40), Free(3), Free(7)], (True,)) is None   # frees what it did not make
    assert RecordedUpdate.of([Alloc(7, 40), Alloc(8, 8), Free(7)], (True,)) is None   # leaves one alive


def test_a_replayed_update_counts_as_its_storages_would():
    tracker = LiveStorageTracker(trace=[])
    with tracker:
        tracker.replay((Alloc(0, 40), Alloc(1, 24), Free(0), Alloc(2, 100), Free(1), Free(2)), tag="u")
    assert tracker.peak_bytes == 124 and tracker.current_bytes == 0
    assert tracker.trace == [Alloc(("u", 0), 40), Alloc(("u", 1), 24), Free(("u", 0)), Alloc(("u", 2), 100),
                             Free(("u", 1)), Free(("u", 2))]


def _replayed(estimator: CpuEstimator, batch: int, image_size: int) -> bool:
    """Whether the training step recorded at `batch` replayed its optimizer step (replayed storages
    are named by the tracker's tag, not by an address)."""
    step = estimator._recorded["train", image_size, batch].recording.step
    return any(isinstance(event.id, tuple) and event.id[0][0] == "optimizer step" for event in step)


@pytest.mark.parametrize("name", ["ResNet-18", "ViT-128/4x4", "WaveMix-16/5"])
def test_estimates_with_a_replayed_update_are_byte_for_byte_those_that_run_it(name):
    source = resolve_source(name)

    def build():
        return source.build(num_classes=100, image_size=32)
    replaying, running = CpuEstimator(build, StepConfig(device=CPU)), CpuEstimator(build, StepConfig(device=CPU),
                                                                                   replay_updates=False)
    for batch in (64, 1, 37):
        assert replaying.estimate("train", batch=batch, image_size=32) == running.estimate(
            "train", batch=batch, image_size=32), batch
    assert [_replayed(replaying, b, 32) for b in (64, 1, 37)] == [False, True, True]
    assert not any(_replayed(running, b, 32) for b in (64, 1, 37))
    # the lines through replayed and run recordings agree as well
    assert replaying.extrapolate("train", batch=5000, image_size=32) == running.extrapolate(
        "train", batch=5000, image_size=32) is not None


class HeadAboveEight(nn.Module):
    """A linear probe with a second layer that only batches above 8 images use."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 10)
        self.extra = nn.Linear(10, 10)

    def forward(self, x):
        out = self.fc(x.flatten(1))
        return self.extra(out) if x.shape[0] > 8 else out


def test_an_update_with_other_parameters_holding_gradients_runs():
    replaying = CpuEstimator(HeadAboveEight, StepConfig(device=CPU, num_classes=10))
    running = CpuEstimator(HeadAboveEight, StepConfig(device=CPU, num_classes=10), replay_updates=False)
    batches = (16, 4, 32)   # recorded with every gradient; at 4 the second layer has none; at 32 all again
    for batch in batches:
        assert replaying.estimate("train", batch=batch, image_size=8) == running.estimate(
            "train", batch=batch, image_size=8), batch
    assert [_replayed(replaying, b, 8) for b in batches] == [False, False, True]


# --- the max-batch search on extrapolations -------------------------------------------------------

@pytest.mark.parametrize("name", ["ConvMixer-256/8", "ViT-128/4x4"])
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_a_replayed_search_finds_the_same_batch_from_fewer_estimates(name, mode):
    settings = Settings(model=name, image_size=32, max_batch_modes=(mode,))
    config = StepConfig.of(settings)
    source = resolve_source(name)

    def build():
        return source.build(num_classes=settings.num_classes, image_size=settings.image_size)

    plain = search_max_batch(build, config, settings, mode=mode, replay=False)
    estimator = CpuEstimator(build, config)
    cpu_memory_result(estimator, batch=settings.batch_size, image_size=32)   # the memory stage's recordings
    replayed = search_max_batch(build, config, settings, mode=mode, estimator=estimator)
    assert replayed.max_batch == plain.max_batch > settings.batch_size
    assert replayed.method == "cpu-estimate, model-guided, replayed" and plain.method == "cpu-estimate, model-guided"
    assert replayed.predicted_device_bytes == plain.predicted_device_bytes
    # ViT's batch 1 copies less than larger batches (a size-1 dimension makes reshapes views): a
    # guided probe first, then the answer and the batch above it
    assert len(replayed.probes) <= 4 < len(plain.probes)
    assert [p.batch for p in replayed.probes][-2:] == [replayed.max_batch, replayed.max_batch + 1]
    assert settings.batch_size not in {p.batch for p in replayed.probes}
    same = {p.batch: p for p in plain.probes}
    assert all(dataclasses.asdict(p) == dataclasses.asdict(same[p.batch]) for p in replayed.probes if p.batch in same)
