"""What a GPU holds beyond PyTorch's tensors, by GPU generation, CUDA version and module loading.

A CPU estimate counts tensors. What nvidia-smi shows for the same step on a GPU adds, inside out:

1. PyTorch's caching allocator: its rounding and cached blocks (the allocator model turns the
   estimate's allocated bytes into reserved bytes), and cuBLAS's workspaces, which torch allocates
   through the caching allocator (``CublasHandlePool.cpp``: ``getNewWorkspace``) and keeps, one per
   (cuBLAS handle, stream). Each thread takes its own handle from torch's pool and autograd runs a
   CUDA backward pass on its own device thread, so a training step holds two workspaces (forward
   and backward) and an inference pass one. cuBLASLt shares the cuBLAS workspace by default
   (``TORCH_CUBLASLT_UNIFIED_WORKSPACE``, see ``torch.backends.cuda.blas_workspace_size``). So
   from torch 2.4 (pytorch#124250) to at least 2.14, the torch installed here; the 2.15 documentation
   of ``torch.cuda.current_blas_handle`` says a handle keeps cuBLAS's own workspace unless ATen's
   workspace caching is turned on, which would move it outside the allocator: the upper end is the
   same either way, only the reserved end would be smaller.
2. Outside the allocator: the CUDA context (driver state and the kernel modules loaded at start),
   the kernels a step loads later under lazy loading, and cuDNN's and cuBLAS's handles and modules.

So the prediction is a band: allocated (tensors) <= reserved (+ allocator, + cuBLAS workspaces)
<= device (+ what lives outside the allocator), the last being what nvidia-smi would show.

Not counted: cuDNN's convolution workspaces. torch allocates them through the caching allocator
and gives up an algorithm whose workspace does not fit (``cudnn/Conv_v7.cpp`` tries the next one;
the v8 API halves the workspace and drops the plans that needed more), so they change speed, not
whether a batch fits.

Every figure names its basis and source: a measurement (what, on which GPU, where published), the
documentation, torch's code, or an assumption with its reason. Measurements of the CUDA context
were found for too few GPUs to tell generations apart, so that figure depends on the CUDA version
and the loading mode only, and each row says where it was measured. Never imports torch.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Optional

from .allocator import Alloc, Allocator, Event
from ..core.figures import BASES, Figure  # noqa: F401 - BASES: the bases every figure of this table takes
from ..core.gpu_peaks import normalise_name
from ..core.results import MemoryResult

MIB = 2**20
LOADINGS = ("lazy", "eager")
# cuBLAS workspaces a step holds: one per (handle, stream), one handle per thread (module docstring).
WORKSPACES_PER_STEP = {"train": 2, "infer": 1}
@dataclass(frozen=True)
class Generation:
    """A GPU generation: compute capabilities (major * 10 + minor), the CUDA major versions that
    build for it, and the model words its device names carry ("h100" in "NVIDIA H100 80GB HBM3")."""

    name: str
    sm: tuple[int, ...]
    cuda_majors: tuple[int, ...]
    models: tuple[str, ...]


# CUDA 13.0 dropped Maxwell, Pascal and Volta; Ada and Hopper need CUDA 11.8 or later.
GENERATIONS: tuple[Generation, ...] = (
    Generation("Volta", (70, 72), (11, 12), ("v100", "v100s")),
    Generation("Turing", (75,), (11, 12, 13), ("t4", "2060", "2070", "2080")),
    Generation("Ampere", (80, 86, 87), (11, 12, 13),
               ("a100", "a800", "a30", "a40", "a10", "a10g", "a16", "a2", "a4000", "a4500", "a5000", "a5500",
                "a6000", "3050", "3060", "3070", "3080", "3090")),
    Generation("Ada", (89,), (11, 12, 13), ("l4", "l20", "l40", "l40s", "4060", "4070", "4080", "4090", "ada")),
    Generation("Hopper", (90,), (11, 12, 13), ("h100", "h200", "h800", "h20", "gh200")),
    # CUDA 12.8 was the first to build for Blackwell
    Generation("Blackwell", (100, 120), (12, 13), ("b100", "b200", "gb200", "5070", "5080", "5090")),
)

_EAGER_CUDA11 = Figure(
    1687 * MIB, "measured",
    "nvidia-smi after torch.Tensor(1).cuda(): 1687 MiB with torch 1.8.2+cu111 on a GeForce RTX 3090 (Ampere sm86), "
    "eager loading (lazy loading came with CUDA 11.7); https://github.com/pytorch/pytorch/issues/55277")
# The CUDA context once torch has started CUDA and run a first kernel: device memory outside the allocator.
CONTEXT: dict[tuple[int, str], Figure] = {
    (11, "eager"): _EAGER_CUDA11,
    (11, "lazy"): Figure(
        287_047_680, "measured",
        "cudaMemGetInfo used bytes after one 6.4 MB tensor (counted here too), torch 1.13 with CUDA 11.7 and "
        "CUDA_MODULE_LOADING=LAZY; 666,632,192 B eager; GPU not named; https://github.com/pytorch/pytorch/pull/86509"),
    (12, "lazy"): Figure(
        400 * MIB, "documented",
        "'around 400MB if CUDA >= 11.7 is used and lazy module loading enabled (default in PyTorch)': a PyTorch "
        "maintainer, September 2023 (CUDA 12.1 builds), read as MiB to round up; "
        "https://github.com/pytorch/pytorch/issues/109888"),
    (13, "lazy"): Figure(
        426 * MIB, "measured",
        "nvidia-smi after torch.cuda.mem_get_info(0): 426 MiB with torch 2.10.0+cu130 on an RTX 6000 Ada (sm89); "
        "https://github.com/unslothai/unsloth-zoo/pull/1053"),
    **{(major, "eager"): Figure(
        _EAGER_CUDA11.bytes, "assumption",
        f"no eager-loading measurement with CUDA {major} found (CUDA loads lazily by default on Linux since 12.2: "
        "https://docs.nvidia.com/cuda/cuda-programming-guide/04-special-topics/lazy-loading.html); the CUDA 11 "
        "eager measurement (pytorch#55277) taken instead") for major in (12, 13)},
}

# Kernels a training step loads into the context after start: lazily, as each is first launched.
STEP_KERNELS: dict[str, Figure] = {
    "lazy": Figure(
        666_632_192 - 287_047_680, "assumption",
        "no measurement of what one training step loads found; bounded by what eager loading loads at start "
        "beyond lazy loading, 666,632,192 - 287,047,680 B measured with torch 1.13 and CUDA 11.7 "
        "(https://github.com/pytorch/pytorch/pull/86509), taken for every CUDA version"),
    "eager": Figure(
        0, "documented",
        "eager loading loads every module when the context is created, so the context figure holds them; "
        "https://docs.nvidia.com/cuda/cuda-programming-guide/04-special-topics/lazy-loading.html"),
}

# What a GPU showed beyond the caching allocator, measured by `wavemix-profile validate`: NVML's used
# memory less the allocator's reserved bytes, the largest over a validation's steps.
MEASURED_OUTSIDE: dict[tuple[str, int, str], Figure] = {
    ("Hopper", 13, "lazy"): Figure(
        1394 * MIB, "measured",
        "NVML's used memory (sampled every 10 ms) less the caching allocator's reserved bytes, during the "
        "training step and the inference pass of the paper's 19 models at 32 and 64 px, batch 64, fp16: 1,366 to "
        "1,394 MiB over 76 steps, the largest taken; NVIDIA H200, driver 580.159.04, torch 2.11.0+cu130; this "
        "project's validation, reports/nvidia-h200/results.jsonl"),
}

LIBRARIES = Figure(
    MEASURED_OUTSIDE[("Hopper", 13, "lazy")].bytes - CONTEXT[(13, "lazy")].bytes - STEP_KERNELS["lazy"].bytes,
    "assumption",
    "cuDNN's and cuBLAS's handles and the modules they load: no measurement of them alone; what the H200's "
    "measured bytes outside the allocator (reports/nvidia-h200) leave beyond the CUDA 13 context and the "
    "kernels' bound, taken for every row")

_CUBLAS_SOURCE = "aten/src/ATen/cuda/CublasHandlePool.cpp, parseChosenWorkspaceSize"


def cublas_workspace(sm: int) -> Figure:
    """torch's default cuBLAS workspace for one (handle, stream) on a GPU of compute capability `sm`."""
    if sm >= 90:
        return Figure(4096 * 1024 * 8, "code",
                      f"torch's default for sm90 and newer, :4096:8 = 8 x 4096 KiB ({_CUBLAS_SOURCE})")
    return Figure(4096 * 1024 * 2 + 16 * 1024 * 8, "code",
                  f"torch's default CUBLAS_WORKSPACE_CONFIG=:4096:2:16:8 = 2 x 4096 + 8 x 16 KiB ({_CUBLAS_SOURCE}; "
                  "https://docs.pytorch.org/docs/stable/notes/cuda.html#cublas-workspaces), seen as an "
                  "8,519,680-byte block in a memory snapshot: https://discuss.pytorch.org/t/torch-cuda-memory-snapshot-"
                  "shows-an-unexpected-8519680b-memory-allocation-during-matrix-multiplication/178671")


@dataclass(frozen=True)
class Row:
    """The overheads of one GPU generation under one CUDA major version and module-loading mode."""

    generation: Generation
    cuda_major: int
    loading: str
    context: Figure
    step_kernels: Figure
    libraries: Figure
    cublas_workspace: Figure    # one workspace; a step keeps WORKSPACES_PER_STEP[mode] of them

    @property
    def label(self) -> str:
        """"Hopper sm90, CUDA 13, lazy loading"."""
        sm = "/".join(f"sm{s}" for s in self.generation.sm)
        return f"{self.generation.name} {sm}, CUDA {self.cuda_major}, {self.loading} loading"

    @property
    def outside_allocator_bytes(self) -> int:
        """Context, lazily loaded kernels and library handles: seen by nvidia-smi, not by torch's allocator."""
        return self.context.bytes + self.step_kernels.bytes + self.libraries.bytes

    def workspace_events(self, mode: str) -> list[Event]:
        """The cuBLAS workspaces a training step ("train") or inference pass ("infer") keeps, as the
        allocations they are: made on a step's first matrix product and never freed."""
        return [Alloc(("cuBLAS workspace", i), self.cublas_workspace.bytes) for i in range(WORKSPACES_PER_STEP[mode])]

    def workspace_bytes(self, mode: str) -> int:
        """What the caching allocator reserves for the cuBLAS workspaces a training step ("train") or
        inference pass ("infer") keeps: the segments it opens for them on first use (two 8.125 MiB
        workspaces share one 20 MiB segment; a 32 MiB one gets its own)."""
        allocator = Allocator()
        allocator.replay(self.workspace_events(mode))
        return allocator.reserved_bytes

    def fixed_bytes(self, mode: str) -> int:
        """Everything this row adds to the tensors' reserved bytes, in bytes."""
        return self.workspace_bytes(mode) + self.outside_allocator_bytes

    def figures(self) -> dict[str, Figure]:
        return {"CUDA context": self.context, "kernels loaded during the step": self.step_kernels,
                "cuDNN and cuBLAS handles": self.libraries, "cuBLAS workspace": self.cublas_workspace}


def _rows() -> tuple[Row, ...]:
    return tuple(Row(gen, major, loading, CONTEXT[(major, loading)], STEP_KERNELS[loading], LIBRARIES,
                     cublas_workspace(max(gen.sm)))
                 for gen in GENERATIONS for major in gen.cuda_majors for loading in LOADINGS)


ROWS: tuple[Row, ...] = _rows()


def _largest(rows) -> Row:
    return max(rows, key=lambda r: (r.fixed_bytes("train"), r.cuda_major))


@dataclass(frozen=True)
class Overheads:
    """The row a prediction uses and how it was chosen: `exact` when the target GPU, CUDA version and
    loading mode all matched a row; otherwise `note` says what was not known and what was taken."""

    row: Row
    exact: bool
    note: str

    def describe(self) -> str:
        """One line for results and reports: the row, and why it was taken when it is not an exact match."""
        return self.row.label if self.exact else f"{self.row.label} ({self.note})"


def find_generation(target: str) -> Optional[Generation]:
    """The generation a GPU name ("Tesla V100-SXM2-16GB", "H100"), generation ("ampere") or compute
    capability ("sm86", "sm_86", "8.6", "sm100") names, or None. A card of the GPU table (gpus.py) has
    its compute capability's; other names match by whole model words, so "A10" is Ampere and "A1000"
    is unknown."""
    from ..core.gpus import find_card
    found = find_card(target)
    if found is not None:
        return next((gen for gen in GENERATIONS if found.card.sm in gen.sm), None)
    key = normalise_name(target)
    sm = re.fullmatch(r"(?:sm ?)?(\d{1,2}) ?(\d)", key)
    for gen in GENERATIONS:
        if sm and int(sm[1] + sm[2]) in gen.sm:
            return gen
        if key == gen.name.casefold() or set(key.split()) & set(gen.models):
            return gen
    return None


def cuda_major(version: Optional[str]) -> Optional[int]:
    """"12.4" -> 12; None (a CPU-only torch) stays None."""
    return int(version.split(".")[0]) if version else None


def overheads_for(target: Optional[str], *, cuda_version: Optional[str], loading: str = "lazy") -> Overheads:
    """The overhead row for a prediction on `target` (a GPU name, generation or compute capability;
    None: not named) with CUDA `cuda_version` ("12.4"; None: not known) and `loading` ("lazy" or "eager").

    An unknown GPU takes the largest row (most bytes a training step adds) for the CUDA version and
    loading, an unknown CUDA version the largest row of the GPU; `exact` is False and `note` says so.
    """
    if loading not in LOADINGS:
        raise ValueError(f"unknown module loading {loading!r}; accepted: {', '.join(LOADINGS)}")
    gen = find_generation(target) if target else None
    major = cuda_major(cuda_version)
    candidates = [r for r in ROWS if r.loading == loading and (gen is None or r.generation == gen)]
    notes = []
    if gen is None:
        notes.append(f"unknown GPU {target!r}" if target else "no target GPU named")
    if major is None:
        notes.append("CUDA version not known")
    elif any(r.cuda_major == major for r in candidates):
        candidates = [r for r in candidates if r.cuda_major == major]
    else:
        known = gen is not None and any(r.cuda_major == major for r in ROWS)
        notes.append(f"CUDA {major} does not build for {gen.name}" if known else f"no CUDA {major} row")
        major = None
    if not notes:
        return Overheads(candidates[0], exact=True, note="")
    largest = " ".join(["the largest", *([gen.name] if gen else []), *([f"CUDA {major}"] if major else []), "row"])
    return Overheads(_largest(candidates), exact=False, note=f"{'; '.join(notes)}: {largest}")


@dataclass(frozen=True)
class MemoryBand:
    """A predicted step on a GPU, in bytes: tensors (the CPU estimate) <= what the caching allocator
    reserves (its model of the tensors, plus cuBLAS's workspaces) <= what nvidia-smi would show
    (plus the context, lazily loaded kernels and library handles)."""

    allocated_bytes: int
    reserved_bytes: int
    device_bytes: int


def band(allocated_bytes: int, allocator_reserved_bytes: int, row: Row, mode: str) -> MemoryBand:
    """The band of one training step or inference pass (`mode`) from the estimate's allocated bytes and
    the allocator model's reserved bytes (equal to allocated where there is no model)."""
    reserved = max(allocated_bytes, allocator_reserved_bytes) + row.workspace_bytes(mode)
    return MemoryBand(allocated_bytes, reserved, reserved + row.outside_allocator_bytes)


def with_device_band(memory: MemoryResult, overheads: Overheads) -> MemoryResult:
    """A CPU estimate with the band's upper end filled in for both peaks (and the row it used)."""
    def device(mode: str, allocated: int, reserved: Optional[int]) -> int:
        return band(allocated, reserved or allocated, overheads.row, mode).device_bytes

    return dataclasses.replace(
        memory, overhead_source=overheads.describe(),
        predicted_device_train_bytes=device("train", memory.peak_train_bytes, memory.reserved_train_bytes),
        predicted_device_infer_bytes=device("infer", memory.peak_infer_bytes, memory.reserved_infer_bytes))
