"""Kill `sslbench bench` during pretraining, feature extraction and fine-tuning; each rerun resumes,
and in the end every job has exactly one valid result and no partial file exists anywhere."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from leaderboard.results import validate_result
from tests.e2e.test_bench_cli import EXPECTED_JOBS, bench_command, result_files


def run_until(tmp: Path, marker: str, delay: float = 0.0) -> str:
    """Start the bench, SIGKILL its whole process group `delay` s after `marker` appears on stderr."""
    proc = subprocess.Popen(bench_command(tmp), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if marker in line:
                time.sleep(delay)
                os.killpg(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    out = "".join(seen)
    assert marker in out, f"the bench never reached {marker!r}:\n{out[-3000:]}"
    assert proc.returncode == -signal.SIGKILL, "the bench finished before it could be killed"
    return out


def partial_files(tmp: Path) -> list[Path]:
    return [p for p in tmp.rglob("*") if p.is_file() and ".tmp-" in p.name]


def finished_jobs(tmp: Path) -> int:
    return len(result_files(tmp))


@pytest.mark.slow
def test_bench_killed_anywhere_resumes_without_losing_or_repeating_a_job(tmp_path):
    run_until(tmp_path, "pretraining vicreg", delay=2.0)
    assert finished_jobs(tmp_path) == 0

    out = run_until(tmp_path, "extracting features")
    assert "pretraining vicreg" in out  # the killed pretraining was picked up again, not skipped
    assert not list((tmp_path / "runs").rglob("features/*.npy"))  # killed before the features were saved

    out = run_until(tmp_path, "fine-tuning:")
    before = finished_jobs(tmp_path)
    assert 0 < before < EXPECTED_JOBS
    assert "pretraining vicreg" not in out  # the checkpoint was finished by now

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
