"""The test-only kill points: SIGKILL at the n-th arrival at a named stage, nothing otherwise."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.kill_points import ENV, SIGNAL_ENV

ROOT = Path(__file__).resolve().parents[2]
# Prints each arrival before reaching the stage, so the output says where the process died.
CODE = """
from benchmark.kill_points import kill_point
for i in range(1, 4):
    kill_point("other")
    print(i, flush=True)
    kill_point("stage")
print("end", flush=True)
"""


@pytest.mark.parametrize(("wanted", "code", "out"), [
    (None, 0, "1 2 3 end"), ("", 0, "1 2 3 end"), ("elsewhere", 0, "1 2 3 end"), ("stage:4", 0, "1 2 3 end"),
    ("stage", -signal.SIGKILL, "1"), ("stage:1", -signal.SIGKILL, "1"), ("stage:3", -signal.SIGKILL, "1 2 3"),
])
def test_kill_at_the_nth_arrival_at_the_named_stage(wanted, code, out):
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if wanted is not None:
        env[ENV] = wanted
    proc = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.split()) == (code, out.split())


def test_the_signal_can_be_sigterm():
    env = {**os.environ, ENV: "stage:2", SIGNAL_ENV: "TERM", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.split()) == (-signal.SIGTERM, ["1", "2"])
