"""Committed results are the reference (benchmark.reference): a run never writes over a committed result
of another job key; it writes beside it in the user's own folder and reports how the two differ."""
import json
import os
import subprocess

import pytest

from benchmark.device import machine_record
from benchmark.reference import ResultSlots, committed_files, reproduction_report
from benchmark.runner import Job, run_jobs
from leaderboard.results import machine_text, read_result, write_result
from tests.unit.test_runner import record

THIS = "d" * 64  # this run's job key
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org"}


def _job(path, key, calls, f1=0.5):
    def produce():
        calls.append(key)
        r = record(key)
        r["metrics"]["test"]["macro_f1"] = f1
        return r

    return Job(key=key, output=path, produce=produce, label=key)


def test_a_committed_result_of_another_key_is_left_as_it_is_and_the_run_goes_to_the_local_folder(tmp_path):
    results, local = tmp_path / "results", tmp_path / "runs" / "results"
    slot = results / "track" / "random" / "linear_probe" / "10pct" / "pretrain-seed0" / "seed0.json"
    write_result(slot, record("c" * 64))
    before = slot.read_bytes()
    slots = ResultSlots(results, local, committed=frozenset({slot.resolve()}))
    calls = []
    summary = run_jobs([_job(slot, THIS, calls)], slots=slots, progress=False)
    assert calls == [THIS] and summary.skipped == 0
    assert slot.read_bytes() == before  # the committed file is untouched
    mine = local / slot.relative_to(results)
    assert read_result(mine)["job"]["key"] == THIS and summary.done == [mine]
    assert slots.diverted == {slot.resolve(): mine}
    # Run again: the local result is found, nothing reruns.
    again = ResultSlots(results, local, committed=frozenset({slot.resolve()}))
    summary = run_jobs([_job(slot, THIS, calls)], slots=again, progress=False)
    assert calls == [THIS] and summary.skipped == 1 and again.diverted == {slot.resolve(): mine}


def test_a_committed_result_with_the_jobs_own_key_is_finished_and_counted_as_kept(tmp_path):
    results = tmp_path / "results"
    slot = results / "t" / "seed0.json"
    write_result(slot, record("e" * 64))
    slots = ResultSlots(results, tmp_path / "local", committed=frozenset({slot.resolve()}))
    calls = []
    summary = run_jobs([_job(slot, "e" * 64, calls)], slots=slots, progress=False)
    assert calls == [] and summary.skipped == 1 and slots.matched == {slot.resolve()} and not slots.diverted


def test_uncommitted_results_and_replace_reference_are_written_over_as_before(tmp_path):
    results = tmp_path / "results"
    mine, committed = results / "t" / "mine.json", results / "t" / "committed.json"
    write_result(mine, record("a" * 64))
    write_result(committed, record("a" * 64))
    calls = []
    # A result of the user's own (not tracked by git): a job of another key replaces it, as it always did.
    run_jobs([_job(mine, "b" * 64, calls)], slots=ResultSlots(results, tmp_path / "local", committed=frozenset()),
             progress=False)
    assert read_result(mine)["job"]["key"] == "b" * 64
    # --replace-reference: the user asked for their numbers in the committed slot.
    slots = ResultSlots(results, tmp_path / "local", replace=True, committed=frozenset({committed.resolve()}))
    run_jobs([_job(committed, "b" * 64, calls)], slots=slots, progress=False)
    assert read_result(committed)["job"]["key"] == "b" * 64 and not (tmp_path / "local").exists()


def test_committed_files_are_the_files_git_tracks_in_the_results_folder(tmp_path):
    results = tmp_path / "repo" / "results"
    tracked, untracked = results / "a" / "seed0.json", results / "a" / "seed1.json"
    write_result(tracked, record("f" * 64))
    assert committed_files(results) == frozenset()  # not a git checkout: nothing is a reference
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True, env=GIT_ENV)
    subprocess.run(["git", "-C", str(tmp_path / "repo"), "add", "."], check=True, env=GIT_ENV)
    subprocess.run(["git", "-C", str(tmp_path / "repo"), "commit", "-qm", "results"], check=True, env=GIT_ENV)
    write_result(untracked, record("f" * 64))
    assert committed_files(results) == frozenset({tracked.resolve()})
    assert committed_files(tmp_path / "missing") == frozenset()


def _pair(tmp_path, ref_machine, f1_ref, f1_mine, same_checkpoint=False):
    ref, mine = record("a" * 64), record("b" * 64)
    for r, h, f1 in ((ref, "1" * 64, f1_ref), (mine, ("1" if same_checkpoint else "2") * 64, f1_mine)):
        r["init"] = {"name": "random", "kind": "baseline", "checkpoint_hash": h,
                     "pretrain": {"diagnostics": {"encoder_change": 0.0, "after": {"knn_macro_f1": 0.2 if h[0] == "1"
                                                                                   else 0.15, "effective_rank": 40.0}}}}
        r["metrics"]["test"]["macro_f1"] = f1
    if ref_machine:
        ref["provenance"]["machine"] = ref_machine
    else:
        ref["provenance"]["device"] = "CPU: AMD EPYC (2 cores)"
    a, b = tmp_path / "ref.json", tmp_path / "mine.json"
    write_result(a, ref)
    write_result(b, mine)
    return a, b


def test_the_reproduction_report_names_both_machines_what_differs_and_the_scores_side_by_side(tmp_path):
    a, b = _pair(tmp_path, None, 0.40, 0.35)
    here = {**machine_record("cpu"), "cpu_model": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512"}
    slots = ResultSlots(tmp_path, tmp_path / "local", committed=frozenset())
    slots.diverted = {a: b}
    text = reproduction_report(slots, here)
    assert "# Reproduction report: synthetic-resnet18-32px-smoke" in text
    assert "committed results made on: CPU: AMD EPYC (2 cores), ? threads (instruction set and BLAS not recorded)" in text
    assert f"this machine: {machine_text({'machine': here})}" in text and "AVX512" in text
    init_row = next(line for line in text.splitlines() if line.startswith("| random ") and "11111111" in line)
    assert "checkpoint" in init_row and "11111111 → 22222222" in init_row
    assert "pool k-NN 20.0" in init_row and "pool k-NN 15.0" in init_row
    score_row = next(line for line in text.splitlines() if line.startswith("| random ") and "linear_probe" in line)
    assert [c.strip() for c in score_row.strip("|").split("|")] == ["random", "linear_probe", "10 %", "1", "40.0",
                                                                     "35.0", "-5.0", "0"]
    assert "--replace-reference" in text
    # Nothing diverted, no report.
    assert reproduction_report(ResultSlots(tmp_path, tmp_path / "l", committed=frozenset()), here) == ""


@pytest.mark.parametrize("same", [True, False])
def test_the_report_says_when_the_checkpoint_is_the_same_and_only_the_job_differs(tmp_path, same):
    a, b = _pair(tmp_path, {"cpu_model": "AMD EPYC", "cpu_capability": "AVX2", "blas": "mkl 2024.2", "threads": 2},
                 0.4, 0.4, same_checkpoint=same)
    slots = ResultSlots(tmp_path, tmp_path / "local", committed=frozenset())
    slots.diverted = {a: b}
    text = reproduction_report(slots, machine_record("cpu"))
    assert "committed results made on: AMD EPYC, AVX2, mkl 2024.2, 2 threads" in text
    row = next(line for line in text.splitlines() if line.startswith("| random ") and "pool" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:4] == (["job key only", "same"] if same else ["checkpoint", "11111111 → 22222222"])
    assert json.loads(a.read_text())["job"]["key"] == "a" * 64  # the report reads, never writes
