"""Result objects: frozen, JSON round-trippable, units in every field name, schema-versioned.

The measuring code returns these, the store persists them, renderers read them. This module never
imports torch, so renderers can use it on a machine without one.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Optional

from .ranges import out_of_range

SCHEMA_VERSION = 1
MEASUREMENTS = ("params", "flops", "memory", "max-batch", "throughput")
INFERENCE_MODES = ("inference_mode", "autograd")
OPTIMIZER_NAMES = ("adam", "adamw", "sgd", "sgd-momentum", "none")   # training.OPTIMIZERS, in this order
DEFAULT_OPTIMIZER = "adam"   # the paper's
# Settings fields of the CPU's quick preset: it keeps `make demo` within minutes on two cores with a
# small batch (memory and max batch are CPU estimates either way), timed in 5 blocks that each last
# at least 50 ms (as many steps as that takes), so a fast model is not timed by one clock tick and
# the spread across blocks says how far a figure can be trusted (benchmarks/cpu_timing.py).
CPU_QUICK_TIMING = {"throughput_batch_size": 2, "warmup_steps": 1, "timed_iterations": 1, "repeats": 5,
                    "min_block_s": 0.05}
# Settings fields added after the store's first records, and the value each had before it was added:
# absent from the key while they hold it, so a request keeps the key its stored record was written under.
KEY_NEUTRAL = {"target_gpu": None, "inference": None, "min_block_s": None, "threads": None, "gpu_type": None,
               "optimizer": DEFAULT_OPTIMIZER, "keep_grads": False, "target_cuda": None}


@dataclass(frozen=True)
class Settings:
    """What was asked for: the store key is built from these fields alone."""

    model: str                  # registry name, "torchvision:NAME", "timm:NAME" or "python:MODULE:FACTORY"
    image_size: int             # square input, pixels
    batch_size: int = 64        # images per step for memory (and throughput unless set below)
    device: str = "cpu"         # "cpu", "cuda" or "cuda:N"
    amp: str = "fp16"           # autocast precision of the training step: "fp16", "bf16" or "off"
    channels_last: bool = False  # model and inputs in channels-last memory format
    compile: bool = False       # the model run through torch.compile
    num_classes: int = 100      # classifier outputs of the model
    throughput_batch_size: Optional[int] = None   # None: batch_size
    warmup_steps: int = 2       # untimed steps before the timed blocks (and before measuring memory on CUDA)
    timed_iterations: int = 10  # calls per timed block, unless min_block_s is set
    repeats: int = 3            # timed blocks per mode
    memory_budget_bytes: Optional[int] = None     # max-batch budget; None: the whole device
    multiple_of: int = 1        # the max batch is a multiple of this
    max_batch_modes: tuple[str, ...] = ("train", "infer")   # which max-batch searches run
    skip: tuple[str, ...] = ()  # subset of MEASUREMENTS
    # The GPU a CPU prediction is for (cuda_overheads.find_generation: a name, generation or sm);
    # None: the most conservative row. CPU only: on CUDA the device itself is measured.
    target_gpu: Optional[str] = None
    # How inference runs: None or "inference_mode" (torch.inference_mode: nothing kept for backward),
    # or "autograd" (a plain forward in eval mode, recording the graph, as a script without no_grad).
    inference: Optional[str] = None
    # Timed blocks last at least this many seconds (calls per block calibrated); None: timed_iterations.
    min_block_s: Optional[float] = None
    threads: Optional[int] = None   # CPU threads of the measuring process; None: torch's default
    # The kind of GPU a Ray task asked for (Ray's accelerator type, e.g. "H100", `--gpu-types`): one
    # measurement per kind, so it is part of the key. None: whatever GPU the device is.
    gpu_type: Optional[str] = None
    # The optimizer of the training step (training.OPTIMIZERS): "adam" (the paper's), "adamw", "sgd",
    # "sgd-momentum" or "none" (forward and backward only).
    optimizer: str = DEFAULT_OPTIMIZER
    # Gradients zeroed in place between steps (zero_grad(set_to_none=False), torch's default before 2.0)
    # rather than released: they are then held through the forward pass too.
    keep_grads: bool = False
    # The CUDA version ("12.4") of the torch a CPU prediction is for; None: this torch's build.
    target_cuda: Optional[str] = None

    def key(self) -> str:
        """Stable identity of a measurement for the store and --resume. A field added after records
        were stored is left out while it holds its KEY_NEUTRAL value, so a request keeps the key its
        stored record was written under."""
        data = to_dict(self)
        for name, neutral in KEY_NEUTRAL.items():
            if data[name] == neutral:
                del data[name]
        return json.dumps(data, sort_keys=True)


@dataclass(frozen=True)
class Environment:
    """Where a result came from."""

    device_name: str                    # the GPU's name as torch reports it, or "CPU: " and the CPU's model
    device_memory_bytes: Optional[int]  # the GPU's total memory; None on the CPU
    driver_version: Optional[str]       # the NVIDIA driver's; None on the CPU
    cuda_version: Optional[str]         # the CUDA version torch was built with; None for a CPU-only torch
    torch_version: str                  # torch.__version__
    torchvision_version: Optional[str]  # None where torchvision is not installed
    python_version: str                 # the Python version (3.11.9)
    platform: str                       # the operating system (platform.platform())
    cpu_threads: int                    # torch's CPU threads in the measuring process
    cudnn_benchmark: Optional[bool]     # torch.backends.cudnn.benchmark on CUDA; None on the CPU
    tf32_matmul: Optional[bool]         # TF32 matmuls allowed on CUDA; None on the CPU
    # The machine's host name: two machines with one GPU model are two devices. None in older records.
    host: Optional[str] = None


@dataclass(frozen=True)
class FlopsResult:
    """Per-image operation counts. One MAC (multiply-add) = 2 FLOPs."""

    # Multiply-adds of matmul, conv and attention ops (FFTs at half their FLOPs) in one forward pass
    forward_macs_per_image: int
    forward_flops_per_image: int        # the same work in FLOPs: 2 per MAC (FFTs at 5 N log2 N)
    train_step_flops_per_image: int     # forward and backward of a scalar loss, the same convention
    uncounted_ops: tuple[str, ...]      # aten ops that ran with no formula ("aten.name"): reported, never zero
    # fvcore's FlopCountAnalysis in eval mode (its "flop" is one MAC; it also counts norms and adaptive
    # pooling), for comparison; None where fvcore is missing or failed
    fvcore_macs_per_image: Optional[int]
    fvcore_unsupported_ops: tuple[str, ...]   # ops fvcore skipped, as "aten::name xCALLS"
    convention: str                     # the counting convention, in words
    # 1 FLOP per element of elementwise, norm, reduction and pooling ops: kept apart from the
    # MAC/FLOP figures above, which count multiply-adds only, as torch, fvcore and papers do.
    forward_elementwise_flops_per_image: Optional[int] = None
    train_step_elementwise_flops_per_image: Optional[int] = None
    fvcore_error: Optional[str] = None   # why fvcore's count failed, one line


@dataclass(frozen=True)
class MemoryResult:
    """Peak memory of one training step (after warm-up, optimizer state allocated) and of inference.

    The inference peak is a freshly built model's: parameters and buffers, the input batch, and what
    the inference pass allocates (activations, temporaries, logits); no optimizer state, gradients or
    labels. Measurement, max-batch probes and the CPU estimate all count it so (memory.py).

    `method` is "cuda-allocator" (measured: torch.cuda.max_memory_allocated) or "cpu-estimate"
    (live tensor storage tracked during the same step on the CPU: an estimate, not GPU memory).
    """

    method: str                 # "cuda-allocator" (measured on the GPU) or "cpu-estimate" (tensors tracked on the CPU)
    batch_size: int             # images per step the peaks are for
    peak_train_bytes: int       # the most tensors held during one training step (allocated)
    peak_infer_bytes: int       # the same for one inference pass
    # The CUDA caching allocator's max_memory_reserved: measured, or for a cpu-estimate predicted by
    # replaying the estimate's allocations through a model of the allocator (reserved.py)
    reserved_train_bytes: Optional[int] = None
    reserved_infer_bytes: Optional[int] = None
    # Device-level used memory (what nvidia-smi shows), read once just after the step: what records
    # written before the NVML sampler hold. Newer records leave these None and fill the peaks below.
    nvml_train_bytes: Optional[int] = None
    nvml_infer_bytes: Optional[int] = None
    params_bytes: Optional[int] = None           # the model's parameters and buffers
    grads_bytes: Optional[int] = None            # gradients of the trainable parameters
    optimizer_state_bytes: Optional[int] = None  # the optimizer's state (Adam: two tensors per parameter)
    activations_train_bytes: Optional[int] = None  # peak minus params, grads and optimizer state
    # The most device-level used memory NVML reported, sampled about every 10 ms during the step.
    nvml_peak_train_bytes: Optional[int] = None
    nvml_peak_infer_bytes: Optional[int] = None
    # CPU estimates only: the band's upper end, what nvidia-smi would show for the step on the target
    # GPU (reserved bytes plus cuBLAS workspaces, CUDA context, lazily loaded kernels and library
    # handles: cuda_overheads.py), and the overhead row it used (cuda_overheads.Overheads.describe).
    predicted_device_train_bytes: Optional[int] = None
    predicted_device_infer_bytes: Optional[int] = None
    overhead_source: Optional[str] = None

    @property
    def is_estimate(self) -> bool:
        return self.method != "cuda-allocator"


@dataclass(frozen=True)
class ThroughputResult:
    """Images per second: median over repeats of timed iterations after warm-up."""

    batch_size: int             # images per timed call
    timer: str                  # "cuda-events" or "wall-clock"
    threads: int                # torch's CPU threads while timing
    iterations: int             # calls per timed block asked for (with min_block_s: *_block_iterations)
    repeats: int                # timed blocks per mode
    train_images_per_s: Optional[float]   # training steps: the median over the timed blocks
    infer_images_per_s: Optional[float]   # inference passes: the median over the timed blocks
    train_cv: Optional[float]   # coefficient of variation of training images/s across the timed blocks
    infer_cv: Optional[float]   # the same for inference
    train_mfu: Optional[float] = None   # achieved FLOP/s / device peak for the precision used (fraction, not %)
    infer_mfu: Optional[float] = None   # the same for inference; None on a device without a known peak
    precision: str = ""         # autocast dtype actually timed ("fp16", "bf16", "fp32")
    # Energy over the timed blocks (energy.py): joules per timed image, and average watts over the
    # summed block time. None where no counter could be read; energy_note then says why.
    train_joules_per_image: Optional[float] = None
    infer_joules_per_image: Optional[float] = None
    train_watts: Optional[float] = None
    infer_watts: Optional[float] = None
    energy_source: Optional[str] = None   # "nvml" (GPU board) or "rapl" (CPU packages)
    energy_note: Optional[str] = None     # why energy is missing, one line
    # Blocks calibrated to last at least min_block_s (None: `iterations` calls per block); the calls
    # per block each mode was timed with, and every timed block's images/s.
    min_block_s: Optional[float] = None
    train_block_iterations: Optional[int] = None
    infer_block_iterations: Optional[int] = None
    train_block_images_per_s: tuple[float, ...] = ()
    infer_block_images_per_s: tuple[float, ...] = ()

    @property
    def train_images_per_joule(self) -> Optional[float]:
        return 1 / self.train_joules_per_image if self.train_joules_per_image else None

    @property
    def infer_images_per_joule(self) -> Optional[float]:
        return 1 / self.infer_joules_per_image if self.infer_joules_per_image else None


@dataclass(frozen=True)
class ProbeRecord:
    """One probe of the search: `peak_bytes` is what tensors held (measured, or the CPU estimate);
    for a prediction, `device_bytes` is the band's upper end the probe was judged by."""

    batch: int                  # images tried
    fits: bool                  # whether the step ran within the budget
    peak_bytes: Optional[int] = None     # the tensors' peak at this batch
    device_bytes: Optional[int] = None   # a prediction's upper end at this batch


@dataclass(frozen=True)
class MaxBatchResult:
    """The largest batch that fits a memory budget, for training or inference."""

    mode: str                   # "train" or "infer"
    max_batch: int              # the largest batch that fits the budget
    budget_bytes: int           # the memory budget searched under
    predicted: bool             # True: predicted from CPU estimates, not found on a GPU
    method: str                 # how the answer was found: measured or estimated, and the search
    probes: tuple[ProbeRecord, ...]   # every batch tried, in order
    search_s: float             # seconds the search took
    capped: bool = False        # the search stopped at its limit and that batch still fitted
    predicted_peak_bytes: Optional[int] = None    # tensors (allocated) at the predicted answer
    # A prediction fits when the band's upper end (what nvidia-smi would show) is within the budget:
    # that end at the answer, and the overhead row it used (cuda_overheads.Overheads.describe).
    predicted_device_bytes: Optional[int] = None
    overhead_source: Optional[str] = None


@dataclass(frozen=True)
class Result:
    """One model at one image size under one set of settings."""

    settings: Settings                   # what was asked for
    model_name: str                      # display name: the paper's notation for the zoo, else the spec's
    family: Optional[str]                # the zoo's architecture family ("WaveMix"); None outside the zoo
    environment: Optional[Environment]   # where it was measured; None for a request that failed before
    params_total: Optional[int] = None   # parameters of the model
    params_trainable: Optional[int] = None   # parameters with requires_grad
    flops: Optional[FlopsResult] = None      # operation counts; None where skipped or failed, as below
    memory: Optional[MemoryResult] = None    # peak memory of a training step and of inference
    throughput: Optional[ThroughputResult] = None   # images/s, MFU and energy
    max_batch_train: Optional[MaxBatchResult] = None   # the largest training batch within the budget
    max_batch_infer: Optional[MaxBatchResult] = None   # the largest inference batch within the budget
    error: Optional[str] = None          # why the measurement failed, one line
    wall_s: float = 0.0                  # seconds the whole measurement took
    created_at: str = ""                 # when it was measured: ISO 8601, UTC
    schema_version: int = SCHEMA_VERSION   # the record format's version (results.SCHEMA_VERSION)
    # Where the record came from: the command line that asked for it (as typed), the tool's version
    # and the git commit of its source when it runs from a checkout.
    command: Optional[str] = None
    tool_version: Optional[str] = None
    git_commit: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ModuleRow:
    """One module of `profile`'s breakdown, in the model's own order, to the depth asked for."""

    path: str                       # "" for the whole model, "blocks.0.mlp" below it
    type_name: str                  # the module's class, e.g. "Conv2d"
    output_shape: Optional[tuple[int, ...]]   # one image's output, batch left out; None: not a tensor
    params: int                     # parameters of the module and everything under it
    forward_macs_per_image: int     # multiply-adds of one image's forward pass (1 MAC = 2 FLOPs)


@dataclass(frozen=True)
class ModuleProfile:
    """`wavemix-profile profile`: one model in depth, at one image size."""

    settings: Settings
    model_name: str
    depth: int
    modules: tuple[ModuleRow, ...]
    memory: Optional[MemoryResult] = None
    environment: Optional[Environment] = None
    command: Optional[str] = None
    schema_version: int = SCHEMA_VERSION


def value_at(obj: Any, path: str) -> Any:
    """The value at a dotted field path ("memory.peak_train_bytes"): the key path in to_dict's record
    and the attribute path in Python; None where a part on the way is None (a skipped measurement)."""
    for name in path.split("."):
        if obj is None:
            return None
        obj = getattr(obj, name)
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclasses to plain JSON-ready values (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


class SchemaError(ValueError):
    """A JSON value that is not a record of this schema; the message starts with the field path."""


class NewerSchemaError(SchemaError):
    """A record written by a newer wavemix-profile: complete, but not ours to read."""

    def __init__(self, version: int):
        super().__init__(f"result schema {version} is newer than this wavemix-profile ({SCHEMA_VERSION}); upgrade")
        self.version = version


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, resolved annotation, required) for each field of a dataclass."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name],
                  f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                 for f in dataclasses.fields(cls))


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _from(tp: Any, value: Any, where: str) -> Any:
    """`value` (parsed JSON) as type `tp`, checked all the way down; SchemaError names the field path."""
    def wrong(expected: str) -> SchemaError:
        return SchemaError(f"{where}: expected {expected}, got {_kind(value)}")

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) != 1 or len(typing.get_args(tp)) != 2:  # only Optional[X]: a real union needs a tag
            raise TypeError(f"{where}: unsupported annotation {tp}")
        return None if value is None else _from(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong("array")
        items = typing.get_args(tp)
        if len(items) == 2 and items[1] is Ellipsis:
            items = (items[0],) * len(value)
        elif len(items) != len(value):
            raise SchemaError(f"{where}: expected {len(items)} items, got {len(value)}")
        return tuple(_from(item, v, f"{where}[{i}]") for i, (item, v) in enumerate(zip(items, value)))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise wrong(f"object ({tp.__name__})")
        prefix = f"{where}." if where else ""
        kwargs = {}
        for name, hint, required in _fields(tp):
            if name in value:
                kwargs[name] = _from(hint, value[name], prefix + name)
                wanted = out_of_range(tp.__name__, name, kwargs[name])
                if wanted:
                    raise SchemaError(f"{prefix}{name}: expected {wanted}, got {value[name]!r}")
            elif required:
                raise SchemaError(f"{prefix}{name}: required field missing")
        return tp(**kwargs)  # unknown keys are ignored: fields added within one schema version
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong("bool")
        return value
    if tp is int:  # bool is an int subclass in Python but never one in our records
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong("int")
        return value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise wrong("float")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise wrong("str")
        return value
    raise TypeError(f"{where}: unsupported annotation {tp}")


def result_from_dict(data: Any) -> Result:
    """Inverse of to_dict for a Result, checking every field against its annotation.

    Raises NewerSchemaError for a record of a newer schema and SchemaError (a ValueError) for
    anything else that is not a Result: a wrong type (int fields never accept bool, float fields
    accept int), a number out of its range (ranges.py: a negative image size, a NaN time), a missing
    required field, a non-object. Unknown keys are ignored.
    """
    if not isinstance(data, dict):
        raise SchemaError(f"record: expected object (Result), got {_kind(data)}")
    version = _from(int, data.get("schema_version", 0), "schema_version")
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(version)
    return _from(Result, data, "")


def settings_from_dict(data: Any) -> Settings:
    """Inverse of to_dict for Settings (a request handed to a measuring child), checked the same way."""
    return _from(Settings, data, "settings")


def result_to_json(result: Result) -> str:
    return json.dumps(to_dict(result), sort_keys=True, separators=(",", ":"))


def profile_from_dict(data: Any) -> ModuleProfile:
    """Inverse of to_dict for `profile`'s ModuleProfile (its --out JSON file), checked the same way."""
    if not isinstance(data, dict):
        raise SchemaError(f"profile: expected object (ModuleProfile), got {_kind(data)}")
    return _from(ModuleProfile, data, "")
