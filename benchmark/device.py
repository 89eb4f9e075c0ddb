"""The compute device a run uses, and how a result names it."""
from __future__ import annotations

import os
import platform

import torch


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    """The device as a result's provenance records it: the GPU's name, or the CPU's model and cores."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"CPU: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


# How a network's tensors are laid out in memory on a CPU. In `channels_last` (NHWC) oneDNN runs
# EfficientNet-Lite0's depthwise convolutions and BatchNorms on contiguous channel vectors: one SGD step
# at 48 px, batch 32, is 1.8× faster than in `contiguous` (NCHW) on the 2-core machine, a fine-tune job
# 1.7× (BENCHMARKS.md, `make perf`). ResNet-18's dense convolutions gain little (1.03× at 48 px). The two agree to rounding, not to the bit, so the layout a track was
# made with is part of its keys; `contiguous` is what every run made before the setting existed used.
# On a GPU pretraining always runs in channels_last (cuDNN's layout for bf16 convolutions).
CPU_MEMORY_FORMATS = ("channels_last", "contiguous")
DEFAULT_CPU_MEMORY_FORMAT = "channels_last"


def channels_last(device: torch.device | str, cpu_memory_format: str) -> bool:
    """Whether a network run on `device` is put in channels_last: on a CPU as `cpu_memory_format`
    says; elsewhere not (the protocols' GPU paths are unchanged)."""
    if cpu_memory_format not in CPU_MEMORY_FORMATS:
        raise ValueError(f"cpu_memory_format must be one of {', '.join(CPU_MEMORY_FORMATS)}, "
                         f"got {cpu_memory_format!r}")
    return torch.device(device).type == "cpu" and cpu_memory_format == "channels_last"
