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


# Environment variables that change a CPU's arithmetic without changing the machine: MKL's and ATen's
# instruction-set caps, MKL's conditional-reproducibility mode, and the thread counts (which fix how
# reductions are split).
ARITHMETIC_ENV = ("MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def machine_record(device: torch.device | str = "cpu") -> dict:
    """What makes two machines' floating point differ, as results and checkpoints record it: the CPU
    (vendor, model), the instruction set torch's kernels use, the BLAS and oneDNN builds, the intra-op
    threads, the environment variables that change them (`ARITHMETIC_ENV`, where set), and the GPU
    with its CUDA and cuDNN versions when one is used. Two runs of one job agree to the bit only on
    machines whose records agree (and on a CPU; GPU kernels are not bitwise reproducible)."""
    import re

    info = _cpuinfo()
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    mkl = re.search(r"Math Kernel Library Version ([\w.]+)", config)
    onednn = re.search(r"MKL-DNN v([\w.]+)", config)
    record = {
        "cpu_vendor": info.get("vendor_id") or platform.machine(),
        "cpu_model": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": (blas.group(1) + (f" {mkl.group(1)}" if mkl and blas.group(1) == "mkl" else "")) if blas else "unknown",
        "onednn": onednn.group(1) if onednn else "none",
        "threads": torch.get_num_threads(),
        "env": {name: os.environ[name] for name in ARITHMETIC_ENV if name in os.environ},
    }
    if torch.device(device).type == "cuda":
        record.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda or "unknown",
                      cudnn=str(torch.backends.cudnn.version()))
    return record


def _cpuinfo() -> dict:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, sep, value = line.partition(":")
                if sep:
                    out[key.strip()] = value.strip()
    except OSError:
        pass
    return out
