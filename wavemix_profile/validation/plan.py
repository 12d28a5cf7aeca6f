"""What `wavemix-profile validate` measures: its stages, their requests, their stores, what is left.

Each stage appends to a store of its own under the output folder as each measurement lands, so a
call cut off at any point loses at most the measurement in flight, and the next call takes up
what is left. Stages run in order of value: the reference comparison first, the CPU estimates
(which a user could make anywhere) last. Torch-free: planning and listing never build a model.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..models import PAPER_ZOO
from ..core.gpus import PAPER_BUDGET_BYTES
from ..core.results import CPU_QUICK_TIMING, Settings

CHECK_MODELS = ("ResNet-18", "ResNet-50", "WaveMix-128/7", "WaveMix-256/7")
REPEAT_MODELS = ("ResNet-18", "WaveMix-128/7")
SIZES = (32, 64)
CV_TARGET = 0.02          # throughput's coefficient of variation over repeats, at most
REPEATS = 5
REHEARSAL_MODELS = ("WaveMix-16/5", "2D FNet-64/5")
# The later stages' models when rehearsing: one of the compared, as a GPU's check a few of its 19 (the
# cheaper, 2D FNet-64/5: every stage still runs, in a fraction of the time)
REHEARSAL_CHECK_MODELS = REHEARSAL_MODELS[1:]
REHEARSAL_SIZES = (32,)
REHEARSAL_LABEL = "rehearsal, CPU, not a GPU result"
REHEARSAL_SLUG = "rehearsal-cpu"
# The CPU has no device memory: the rehearsal's "whole device" is this stand-in budget.
REHEARSAL_DEVICE_BYTES = 32 * 2**30
VALIDATION_DIR = "validation"   # under the output folder: every store but the comparison's

# Timed blocks of the repeatability stage: the first try, then longer and better warmed-up blocks
# when the first misses CV_TARGET (GPU clocks ramp up and settle over the first seconds).
GPU_TIMING = ({"warmup_steps": 5, "timed_iterations": 20, "repeats": REPEATS},
              {"warmup_steps": 50, "timed_iterations": 100, "repeats": REPEATS})
CPU_TIMING = ({**CPU_QUICK_TIMING, "repeats": REPEATS},
              {**CPU_QUICK_TIMING, "warmup_steps": 3, "timed_iterations": 4, "repeats": REPEATS})


@dataclass(frozen=True)
class Plan:
    """One validation: on a CUDA device, or its CPU rehearsal."""

    device: str                 # "cuda", "cuda:N" or, rehearsing, "cpu"
    device_bytes: int           # the whole device's memory (the stand-in when rehearsing)
    out: Path
    slug: str                   # the device's folder name under reports/
    rehearse: bool = False

    @property
    def models(self) -> tuple[str, ...]:
        return REHEARSAL_MODELS if self.rehearse else PAPER_ZOO

    @property
    def check_models(self) -> tuple[str, ...]:
        return REHEARSAL_CHECK_MODELS if self.rehearse else CHECK_MODELS

    @property
    def repeat_models(self) -> tuple[str, ...]:
        return REHEARSAL_CHECK_MODELS if self.rehearse else REPEAT_MODELS

    @property
    def sizes(self) -> tuple[int, ...]:
        return REHEARSAL_SIZES if self.rehearse else SIZES

    @property
    def timing(self) -> tuple[dict, ...]:
        return CPU_TIMING if self.rehearse else GPU_TIMING

    def store(self, stage: str) -> Path:
        """Where a stage's records go: the comparison in the folder itself, the rest beside it."""
        return self.out / "results.jsonl" if stage == "compare" else self.out / VALIDATION_DIR / f"{stage}.jsonl"

    def base(self, model: str, size: int) -> Settings:
        """The paper's recipe: batch 64, fp16 AMP, 100 classes, the 16 GB V100's budget."""
        quick = CPU_QUICK_TIMING if self.rehearse else {}
        return Settings(model=model, image_size=size, device=self.device, memory_budget_bytes=PAPER_BUDGET_BYTES,
                        **quick)


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    seconds_each: float         # expected per request on an H100 (the rehearsal is timed on the CPU)


STAGES = (
    Stage("compare", "the zoo at 32 and 64 px: every measurement, max batch within the paper's 16 GiB", 16.0),
    Stage("max-batch-checks", "the found max batch b rechecked: b fits and b + step does not, each in a fresh "
                              "process", 12.0),
    Stage("repeatability", f"images/s over {REPEATS} timed blocks; longer, warmer blocks where the CV is above "
                           f"{CV_TARGET:.0%}", 20.0),
    Stage("whole-device", "max batch within the whole device, against the emulated 16 GiB", 12.0),
    Stage("cpu-estimates", "the CPU's memory estimate and predicted max batch, for the same settings", 5.0),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def compare_requests(plan: Plan) -> list[Settings]:
    return [plan.base(model, size) for model in plan.models for size in plan.sizes]


def whole_device_requests(plan: Plan) -> list[Settings]:
    """Max batch alone, within the whole device (CUDA: no budget; the rehearsal: its stand-in)."""
    budget = REHEARSAL_DEVICE_BYTES if plan.rehearse else None
    return [replace(plan.base(model, size), memory_budget_bytes=budget, skip=("flops", "memory", "throughput"))
            for model in plan.check_models for size in plan.sizes]


def cpu_estimate_requests(plan: Plan) -> list[Settings]:
    """The same measurements on the CPU: memory at batch 64 and max batch predicted for 16 GiB (every
    model), and for the whole device (the check models)."""
    on_cpu = [replace(s, device="cpu", skip=("flops", "throughput")) for s in compare_requests(plan)]
    whole = [replace(s, device="cpu", memory_budget_bytes=plan.device_bytes) for s in whole_device_requests(plan)]
    return on_cpu + whole


def repeat_request(plan: Plan, model: str, attempt: int) -> Settings:
    """Throughput alone at 32 px with the attempt's timed blocks (0: the first try, 1: longer)."""
    return replace(plan.base(model, plan.sizes[0]), skip=("flops", "memory", "max-batch"), **plan.timing[attempt])


def check_size(plan: Plan) -> int:
    return plan.sizes[0]
