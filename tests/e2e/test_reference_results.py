"""Committed results are the reference: `sslbench bench` on a machine whose arithmetic gives other
checkpoints leaves every committed result file as it is, puts its own results in the runs folder and
prints a reproduction report."""
from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from leaderboard.results import write_result
from tests.e2e.test_bench_cli import EXPECTED_JOBS, TRACK, result_files, run_bench
from tests.unit.test_reference import GIT_ENV


def _git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=GIT_ENV).stdout


def _as_made_elsewhere(record: dict) -> dict:
    """The record another machine would have committed for the same job: its CPU's rounding gave the
    pretraining run (and the random baseline's BatchNorm pass) other weights, so another checkpoint
    hash, another job key and other scores."""
    other = json.loads(json.dumps(record))
    other["job"]["key"] = hashlib.sha256((record["job"]["key"] + "elsewhere").encode()).hexdigest()
    other["init"]["checkpoint_hash"] = hashlib.sha256(record["init"]["checkpoint_hash"].encode()).hexdigest()
    other["metrics"]["test"]["macro_f1"] = round(record["metrics"]["test"]["macro_f1"] * 0.9, 6)
    other["provenance"]["machine"] = {"cpu_vendor": "AuthenticAMD", "cpu_model": "AMD EPYC", "cpu_capability": "AVX2",
                                      "blas": "mkl 2024.2", "onednn": "3.12.0", "threads": 2, "env": {}}
    return other


@pytest.mark.slow
def test_a_run_whose_results_differ_leaves_every_committed_file_unchanged_and_reports_how(tmp_path):
    repo = tmp_path / "repo"
    first = run_bench(repo, "--no-leaderboard")
    assert first.returncode == 0, first.stderr[-3000:]
    files = result_files(repo)
    assert len(files) == EXPECTED_JOBS
    made_here = {p: json.loads(p.read_text()) for p in files}
    # Commit the track as a machine of another kind made it: VICReg's and random's records differ,
    # ImageNet's (no pretraining, no BatchNorm pass) are the same jobs.
    for path, record in made_here.items():
        if record["job"]["init"] != "imagenet":
            write_result(path, _as_made_elsewhere(record))
    _git(tmp_path, "init", "-q", str(repo))
    _git(repo, "add", "results")
    _git(repo, "commit", "-qm", "reference results")
    committed = {p: p.read_bytes() for p in files}

    again = run_bench(repo)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _git(repo, "status", "--porcelain", "results") == ""  # not one committed file changed
    assert {p: p.read_bytes() for p in files} == committed
    local = repo / "runs" / "results"
    mine = sorted(local.rglob("*.json"))
    diverted = [p for p, r in made_here.items() if r["job"]["init"] != "imagenet"]
    assert len(mine) == len(diverted) == 2 * EXPECTED_JOBS // 3
    for path in diverted:  # this machine's results, made again bit for bit, beside the committed ones
        got = json.loads((local / path.relative_to(repo / "results")).read_text())
        assert got["job"] == made_here[path]["job"] and got["metrics"] == made_here[path]["metrics"]
    err = again.stderr
    assert f"# Reproduction report: {TRACK}" in err and f"{len(diverted)} results of this run differ" in err
    assert "committed results made on: AMD EPYC, AVX2, mkl 2024.2, 2 threads" in err and "this machine: " in err
    assert f"kept as they are and not rerun: imagenet {EXPECTED_JOBS // 3}." in err
    assert "--replace-reference" in err
    assert (local / TRACK / "REPRODUCTION.md").read_text().startswith(f"# Reproduction report: {TRACK}")
    # The page beside the committed results is made from them alone.
    assert "| vicreg" in (repo / "LEADERBOARD.md").read_text()

    third = run_bench(repo, "--no-leaderboard")
    assert third.returncode == 0 and f"{EXPECTED_JOBS} already finished, 0 to run" in third.stderr

    # Asked for explicitly, this run's numbers go into the committed slots.
    replaced = run_bench(repo, "--no-leaderboard", "--replace-reference")
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    changed = {line.split()[-1] for line in _git(repo, "status", "--porcelain", "results").splitlines()}
    assert changed == {str(p.relative_to(repo)) for p in diverted}
    assert all(json.loads(p.read_text())["metrics"] == made_here[p]["metrics"] for p in diverted)
