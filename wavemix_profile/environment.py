"""Where a result came from: device, driver, CUDA, library versions, precision settings."""
from __future__ import annotations

import importlib.metadata
import platform
import sys

import torch

from .results import Environment


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
    )
