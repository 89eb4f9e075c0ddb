"""Same command, same kind of machine, same numbers.

Every random choice in the engine and the protocols is seeded (pretraining: the run's seed and the
step; downstream jobs: the pretraining seed and the seed). What remains is the arithmetic: on a CPU,
`torch.use_deterministic_algorithms` makes every op take its deterministic implementation, and the
thread count — which fixes how reductions are split — is that of the machine (torch's default: its
physical cores) and is recorded with every result, so two runs on one kind of machine agree to the
last bit (tested: tests/e2e/test_bench_cli.py runs a tiny bench twice in clean folders).

On a GPU the engine trades bit-reproducibility for speed: cuDNN autotuning picks kernels by timing,
bf16 autocast and atomics in some backward kernels reorder sums, so reruns agree to within training
noise, not to the bit; the result records the device.
"""
from __future__ import annotations


def configure(device_type: str) -> dict:
    """Set the deterministic path for `device_type` and return what a result records of it: the
    threads, whether the path is deterministic, and the machine (`benchmark.device.machine_record`),
    which decides whether a rerun elsewhere can agree to the bit."""
    import torch

    from benchmark.device import machine_record

    if device_type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    return {"threads": torch.get_num_threads(), "deterministic": device_type == "cpu",
            "machine": machine_record(device_type)}
