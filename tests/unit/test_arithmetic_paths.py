"""The numeric tests hold on other CPUs' arithmetic, not only on the one `make test` runs on.

torch's CPU kernels and MKL pick their instruction set at run time, so the same wheel rounds
differently on an AMD EPYC (AVX2), an Intel Xeon (AVX-512) or an older CPU (SSE4.2). Two environment
variables make any x86-64 machine take another CPU's path: MKL_ENABLE_INSTRUCTIONS caps MKL's (BLAS,
the probe's matrix products) and ATEN_CPU_CAPABILITY caps ATen's vectorised kernels (reductions,
convolutions' epilogues, softmax). The tests whose assertions rest on floating point (solver
convergence, fitted models, BatchNorm statistics, the probe's choices) are run again here under both,
in a child process. TESTING.md has the whole suite under each path."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NUMERIC_TESTS = ["tests/unit/test_probe.py", "tests/unit/test_finetune.py", "tests/unit/test_knn.py",
                 "tests/unit/test_random_baseline.py", "tests/unit/test_finish_encoder.py",
                 "tests/unit/test_method_gradients.py"]


@pytest.mark.slow
@pytest.mark.parametrize("path", [{"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ATEN_CPU_CAPABILITY": "default"},
                                  {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}],
                         ids=["sse4_2", "avx2"])
def test_the_numeric_tests_pass_on_another_arithmetic_path(path):
    env = {**os.environ, **path, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "-x", *NUMERIC_TESTS], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"under {path}:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
    assert " passed" in done.stdout and " failed" not in done.stdout
