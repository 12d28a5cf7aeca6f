"""Where a result came from: device, driver, CUDA, library versions, precision settings."""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import sys

import torch

from ..core.results import Environment


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def _driver_version() -> str | None:
    try:
        import pynvml
        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else version
    except Exception:  # no NVIDIA driver or library
        return None


def collect_environment(device: torch.device) -> Environment:
    try:  # read from the metadata: importing torchvision costs a second per measuring process
        tv_version = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        tv_version = None
    cuda = device.type == "cuda"
    props = torch.cuda.get_device_properties(device) if cuda else None
    return Environment(
        device_name=props.name if props else f"CPU: {_cpu_name()}",
        device_memory_bytes=props.total_memory if props else None,
        driver_version=_driver_version() if cuda else None,
        cuda_version=torch.version.cuda,
        torch_version=torch.__version__,
        torchvision_version=tv_version,
        python_version=sys.version.split()[0],
        platform=platform.platform(),
        cpu_threads=torch.get_num_threads(),
        cudnn_benchmark=bool(torch.backends.cudnn.benchmark) if cuda else None,
        tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32) if cuda else None,
        host=platform.node() or None,
    )


@functools.cache
def source_commit() -> str | None:
    """The git commit of the wavemix-profile source in use, when it runs from a checkout (else None)."""
    import subprocess
    # this file is measure/environment.py in the package: the checkout is three folders up
    folder = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(folder, ".git")):  # a folder, or a file in a git worktree
        return None
    try:
        done = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None
