"""Kill `sslbench bench` during pretraining, feature extraction and fine-tuning; each rerun resumes,
and in the end every job has exactly one valid result and no partial file exists anywhere."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from benchmark.kill_points import ENV
from leaderboard.results import validate_result
from tests.e2e.test_bench_cli import EXPECTED_JOBS, bench_command, result_files


def run_killed_at(tmp: Path, stage: str) -> str:
    """Run the bench until it SIGKILLs itself at `stage` (benchmark.kill_points); returns its stderr."""
    proc = subprocess.Popen(bench_command(tmp), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", ENV: stage}, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a worker it may have left behind
    assert proc.returncode == -signal.SIGKILL, f"the bench was not killed at {stage}:\n{err[-3000:]}"
    return err


def partial_files(tmp: Path) -> list[Path]:
    return [p for p in tmp.rglob("*") if p.is_file() and ".tmp-" in p.name]


def finished_jobs(tmp: Path) -> int:
    return len(result_files(tmp))


@pytest.mark.slow
def test_bench_killed_anywhere_resumes_without_losing_or_repeating_a_job(tmp_path):
    out = run_killed_at(tmp_path, "pretrain_step")  # after the first of 2 pretraining steps
    assert "pretraining vicreg" in out and finished_jobs(tmp_path) == 0
    assert not list((tmp_path / "runs").rglob("encoder.safetensors"))

    out = run_killed_at(tmp_path, "features")
    assert "pretraining vicreg" in out  # the killed pretraining was picked up again, not skipped
    assert list((tmp_path / "runs").rglob("encoder.safetensors"))
    assert not list((tmp_path / "runs").rglob("features/*.npy"))  # killed before any features were saved
    assert finished_jobs(tmp_path) == 0

    out = run_killed_at(tmp_path, "finetune")  # as the first fine-tune job starts
    assert "pretraining vicreg" not in out  # the checkpoint was finished by now
    before = finished_jobs(tmp_path)
    # vicreg's linear-probe jobs come before its fine-tunes: 2 seeds at 10 %, one at 100 % (every seed
    # has the same training set there and the converged probe is deterministic)
    assert before == 3

    final = subprocess.run(bench_command(tmp_path), capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"{EXPECTED_JOBS} jobs, {before} already finished, {EXPECTED_JOBS - before} to run" in final.stderr
    files = result_files(tmp_path)
    assert len(files) == EXPECTED_JOBS
    keys = []
    for path in files:
        record = json.loads(path.read_text())
        validate_result(record, str(path))
        keys.append(record["job"]["key"])
    assert len(set(keys)) == EXPECTED_JOBS  # one result per job, none twice
    # Temporary files of the killed processes are gone from the results (the runner clears them)
    # and none is left by the finished run.
    assert not [p for p in partial_files(tmp_path) if "results" in p.parts]
