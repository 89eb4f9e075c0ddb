"""The one-command GPU session (`benchmark/gpu-run.sh` → `sslbench session`) on a CPU: the device
check lists every row (CPU rows run, GPU rows skipped with the reason), the grid's results, logs and
summary land in one folder, and a session whose time is spent starts nothing and says what is left."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.doctor import CHECKS
from benchmark.folders import REPO_ROOT
from leaderboard.results import validate_result
from tests.e2e.test_bench_cli import TINY, TRACK

SCRIPT = REPO_ROOT / "benchmark" / "gpu-run.sh"


def _dirs(tmp: Path) -> list[str]:
    return ["--preset", str(TINY), "--runs-dir", str(tmp / "runs"), "--cache-dir", str(tmp / "cache"),
            "--from-results", str(tmp / "no-results-yet")]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_run_checks_the_device_then_runs_the_grid_into_one_folder_until_its_time_is_spent(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "WHEELS": str(tmp_path / "no-wheels"),
           "TIME_LIMIT": "10m"}
    # One init of the tiny track, linear probe only: the device check is the part under test here.
    proc = subprocess.run(["bash", str(SCRIPT), "--method", "random", "--protocol", "linear_probe", *_dirs(tmp_path),
                           "--margin", "5s"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + \
        ((out / "logs" / "doctor.log").read_text()[-3000:] if (out / "logs" / "doctor.log").exists() else "")

    doctor = json.loads((out / "doctor" / "doctor.json").read_text())
    rows = {r["id"]: r for r in doctor["rows"]}
    assert list(rows) == [c.id for c in CHECKS]  # every row is listed, in order
    for check in CHECKS:
        row = rows[check.id]
        if check.needs == "cuda":
            assert row["status"] == "skipped" and "CUDA" in row["detail"], row
        else:
            assert row["status"] == "ok", row
    for row_id in ("cpu", "ddp"):  # pretraining rows: end to end against the model-only step
        assert rows[row_id]["views_per_s"] > 0 and rows[row_id]["ratio"] > 0
    assert "DDPStrategy" in rows["ddp"]["detail"] and "loader cpu" in rows["cpu"]["detail"]
    table = (out / "doctor" / "doctor.md").read_text()
    assert all(f"| {c.path} " in table for c in CHECKS)
    assert "| pretrain · GPU-resident cache · bf16 · eager" in proc.stdout  # the table is in the console too

    results = sorted((out / "results" / TRACK).rglob("*.json"))
    assert len(results) == 3  # random × linear probe: 2 seeds at 10 %, one run at 100 % (the probe is deterministic)
    for path in results:
        validate_result(json.loads(path.read_text()), str(path))
    summary = json.loads((out / "session.json").read_text())
    assert summary["exit"] == 0 and summary["jobs_done"] == summary["jobs_planned"] == 3
    assert (out / "logs" / "bench-random.log").exists() and (out / "nvidia-smi.txt").exists()
    assert "3 of 3 jobs of the track done (3 in this session)" in (out / "SESSION.md").read_text()

    # Later, with no time left: finished work is recognised, nothing starts, what is left is said.
    code = main(["session", "--out", str(out), "--method", "random,imagenet", "--protocol", "linear_probe",
                 *_dirs(tmp_path), "--no-doctor", "--time-limit", "1s"])
    assert code == 75
    units = {u["init"]: u for u in json.loads((out / "session.json").read_text())["units"]}
    assert units["random"]["status"] == "complete" and units["random"]["done"] == 3
    assert units["imagenet"]["status"] == "not started" and "time limit" in units["imagenet"]["note"]
    assert sorted((out / "results" / TRACK).rglob("*.json")) == results
    assert "3 of 6 jobs of the track done (0 in this session)" in (out / "SESSION.md").read_text()
