"""Kill `sslbench bench` during pretraining, feature extraction and fine-tuning; each rerun resumes,
and in the end every job has exactly one valid result and no partial file exists anywhere."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from benchmark.kill_points import ENV, SIGNAL_ENV
from leaderboard.results import validate_result
from tests.e2e.test_bench_cli import EXPECTED_JOBS, TINY, TRACK, bench_command, result_files


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


def _files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


@pytest.mark.slow
def test_sigterm_mid_pretraining_says_how_to_resume_and_the_rerun_keeps_every_earlier_log(tmp_path):
    """SIGTERM (a scheduler's preemption) stops the bench at the end of the pretraining step under way:
    the training state and the logs so far are saved, the message gives the command that resumes it,
    and the rerun finishes without deleting or rewriting anything the first attempt wrote."""
    preset = tmp_path / "tiny.toml"  # the tiny track with 12 pretraining steps: the CSV log has a row at step 10
    text = TINY.read_text()
    assert re.search(r"^steps = 2$", text, flags=re.M)
    preset.write_text(re.sub(r"^steps = 2$", "steps = 12", text, flags=re.M))
    command = [*bench_command(tmp_path), "--preset", str(preset)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", ENV: "pretrain_step:11", SIGNAL_ENV: "TERM"}
    stopped = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-3000:]
    assert "stopped by SIGTERM" in stopped.stderr and "run the same command again" in stopped.stderr
    assert shlex.join(["sslbench", *command[3:]]) in stopped.stderr
    (run,) = (tmp_path / "runs" / "pretrain" / TRACK).glob("vicreg-*")
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] == 11  # the step under way was finished and saved
    before = _files(run)
    (metrics,) = [p for p in before if p.name == "metrics.csv"]
    assert len(before[metrics].decode().splitlines()) > 1  # a header and the rows logged so far
    assert any(p.parts[0] == "tb" and p.name.startswith("events.") for p in before)
    assert finished_jobs(tmp_path) == 0

    # In the downstream grid too: SIGTERM as the first fine-tune starts (the probe results are kept).
    env[ENV] = "finetune"
    grid = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert grid.returncode == 128 + signal.SIGTERM, grid.stderr[-3000:]
    assert "stopped by SIGTERM" in grid.stderr and finished_jobs(tmp_path) == 3

    again = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "will be deleted" not in grid.stderr + again.stderr
    assert f"{EXPECTED_JOBS} jobs, 3 already finished" in again.stderr
    after = _files(run)
    kept = {p: data for p, data in before.items() if not p.parts[0] == "checkpoints"}
    assert {p: after.get(p) for p in kept} == kept  # every earlier log is there, unchanged
    assert (run / "encoder.safetensors").exists()
    assert len([p for p in after if p.parts[0] == "tb" and p.name.startswith("events.")]) == 2
    files = result_files(tmp_path)
    assert len(files) == EXPECTED_JOBS
    for path in files:
        validate_result(json.loads(path.read_text()), str(path))
