import argparse
import json
import os
import time

import numpy as np
import pytest

from benchmark.cli.common import parse_duration
from benchmark.errors import UserError
from benchmark.folders import ensure_writable
from benchmark.runner import Deadline, Job, parse_shard, run_jobs, select_shard
from leaderboard.atomic import remove_stale_temp_files
from leaderboard.errors import ResultFileError, ResultsError
from leaderboard.results import (
    SCHEMA_VERSION,
    ablation_record,
    build_record,
    find_result_files,
    job_variant,
    read_json,
    result_parts,
    result_path,
    scanner_tag,
    schema_errors,
    validate_result,
    write_result,
)

CLASSES = ["4CH", "LVOT", "RVOT"]


def _split(n_right: int = 2) -> dict:
    cm = [[n_right, 0, 0], [0, 1, 0], [0, 0, 1]]
    return {"macro_f1": 1.0, "balanced_accuracy": 1.0, "accuracy": 1.0,
            "per_class_f1": {c: 1.0 for c in CLASSES}, "confusion_matrix": cm, "n": n_right + 2}


def record(key: str, seed: int = 0) -> dict:
    return {
        "schema_version": 2,
        "job": {"key": key, "init": "random", "protocol": "linear_probe", "fraction": 0.1, "pretrain_seed": 0,
                "seed": seed},
        "track": {"id": "synthetic-resnet18-32px-smoke", "pretrain_dataset": "synthetic",
                  "downstream_dataset": "synthetic", "backbone": "resnet18", "resolution": 32, "preset": "smoke"},
        "protocol": {"name": "linear_probe", "version": 1, "hash": "a" * 64},
        "init": {"name": "random", "kind": "baseline"},
        "class_names": CLASSES,
        "metrics": {"val": _split(), "test": _split()},
        "train": {"n_train": 3},
        "provenance": {"git_sha": "x", "git_dirty": False, "dataset_fingerprints": {"downstream": "d"},
                       "packages": {"torch": "2"}, "device": "cpu", "wall_time_s": 0.1,
                       "date": "2026-01-01T00:00:00+00:00", "command": "test"},
    }


def make_jobs(root, n=6, calls=None, tag="k"):
    calls = calls if calls is not None else []
    jobs = []
    for i in range(n):
        key = f"{tag}{i}".ljust(64, "0").encode().hex()[:64]

        def produce(key=key, i=i):
            calls.append(i)
            return record(key, seed=i)

        jobs.append(Job(key=key, output=result_path(root, "t", "random", "linear_probe", 0.1, 0, i),
                        produce=produce, label=f"job{i}"))
    return jobs, calls


def test_result_paths_follow_the_layout(tmp_path):
    assert result_path(tmp_path, "trk", "vicreg", "finetune", 0.01, 2, 3) == \
        tmp_path / "trk" / "vicreg" / "finetune" / "1pct" / "pretrain-seed2" / "seed3.json"
    assert result_path(tmp_path, "trk", "vicreg", "finetune", 1.0, 0, 0).parent.parent.name == "100pct"
    assert result_path(tmp_path, "trk", "vicreg", "finetune", 0.1, 0, 0).parent.parent.name == "10pct"
    assert result_parts("trk", "vicreg", "finetune", 0.1, 0, 0) == \
        ["trk", "vicreg", "finetune", "10pct", "pretrain-seed0", "seed0.json"]


@pytest.mark.parametrize(("scanner", "tag"), [
    ("Voluson E6", "held-out-Voluson_E6"), ("voluson e8", "held-out-voluson_e8"), ("_Aloka.", "held-out-Aloka"),
    ("GE/Philips v1.2", "held-out-GE_Philips_v1.2"), ("  ", "held-out-unnamed"), ("", "held-out-unnamed"),
    ("Xario 200G", "held-out-Xario_200G"),
])
def test_a_held_out_scanner_gets_a_folder_name_safe_for_any_file_system(scanner, tag):
    assert scanner_tag(scanner) == tag


def test_finished_jobs_are_skipped_and_force_reruns_them(tmp_path):
    jobs, calls = make_jobs(tmp_path)
    first = run_jobs(jobs, progress=False)
    assert calls == list(range(6)) and len(first.done) == 6 and first.skipped == 0
    for job in jobs:
        assert json.loads(job.output.read_text())["job"]["key"] == job.key
    again = run_jobs(jobs, progress=False)
    assert calls == list(range(6)) and again.skipped == 6 and not again.done
    run_jobs(jobs, force=True, progress=False)
    assert calls == list(range(6)) * 2


def test_a_result_with_another_key_is_rerun(tmp_path):
    jobs, calls = make_jobs(tmp_path, n=2)
    run_jobs(jobs, progress=False)
    changed, calls2 = make_jobs(tmp_path, n=2, tag="other")  # same paths, new keys (e.g. a new protocol)
    summary = run_jobs(changed, progress=False)
    assert calls2 == [0, 1] and summary.skipped == 0


def test_shards_partition_the_grid(tmp_path):
    jobs, calls = make_jobs(tmp_path, n=7)
    seen = []
    for i in range(3):
        summary = run_jobs(jobs, shard=(i, 3), progress=False)
        seen += summary.done
    assert sorted(seen) == sorted(j.output for j in jobs) and len(set(seen)) == 7
    assert [j.label for j in select_shard(jobs, (1, 3))] == ["job1", "job4"]
    assert sorted(calls) == list(range(7))


@pytest.mark.parametrize("text", ["3/3", "1", "a/b", "0/0", "-1/2"])
def test_bad_shards_are_rejected(text):
    with pytest.raises(UserError, match="--shard expects i/N"):
        parse_shard(text)


def test_parse_shard():
    assert parse_shard("0/4") == (0, 4) and parse_shard(None) is None


def test_a_failing_job_leaves_no_file_and_earlier_results_stay(tmp_path):
    jobs, calls = make_jobs(tmp_path, n=3)

    def boom():
        raise RuntimeError("killed")

    jobs[1].produce = boom
    with pytest.raises(RuntimeError):
        run_jobs(jobs, progress=False)
    assert jobs[0].output.exists() and not jobs[1].output.exists() and not jobs[2].output.exists()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p not in (jobs[0].output,)]


def test_an_invalid_record_is_never_written(tmp_path):
    jobs, _ = make_jobs(tmp_path, n=1)
    bad = record(jobs[0].key)
    bad["metrics"]["test"]["macro_f1"] = 1.5
    jobs[0].produce = lambda: bad
    with pytest.raises(ValueError, match="metrics/test/macro_f1"):
        run_jobs(jobs, progress=False)
    assert not jobs[0].output.exists()
    with pytest.raises(ValueError, match="schema_version"):
        validate_result({k: v for k, v in record("0" * 64).items() if k != "schema_version"})


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
    jobs, _ = make_jobs(tmp_path, n=1)
    folder = jobs[0].output.parent
    folder.mkdir(parents=True)
    stale = folder / ".seed0.json.tmp-999999999"  # no such process
    stale.write_text('{"partial')
    mine = folder / f".seed1.json.tmp-{os.getppid()}"  # a live process: left alone
    mine.write_text("{")
    assert remove_stale_temp_files(tmp_path) == 1
    assert not stale.exists() and mine.exists()


def test_a_results_folder_that_is_not_writable_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"results folder .* is not writable.*--results-dir"):
        ensure_writable(blocker / "results")
    with pytest.raises(ResultsError, match="cannot write .*--results-dir"):
        write_result(blocker / "results" / "x.json", record("0" * 64))
    if os.geteuid() != 0:  # root writes anywhere; the permission case needs a normal user
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(UserError, match="not writable"):
            ensure_writable(ro / "sub")


def test_a_deadline_stops_between_jobs_and_the_same_run_continues_later(tmp_path):
    jobs, calls = make_jobs(tmp_path, n=5)
    deadline = Deadline.after(3600)
    produce = jobs[1].produce

    def runs_into_the_deadline():  # the time runs out while job 1 is running: it still finishes
        deadline.at = time.monotonic()
        return produce()

    jobs[1].produce = runs_into_the_deadline
    first = run_jobs(jobs, progress=False, deadline=deadline)
    assert calls == [0, 1] and first.stopped and first.left == 3
    assert [j.output.exists() for j in jobs] == [True, True, False, False, False]
    again = run_jobs(jobs, progress=False, deadline=Deadline.after(3600))
    assert calls == [0, 1, 2, 3, 4] and not again.stopped and again.left == 0 and again.skipped == 2


def test_a_deadline_already_past_starts_nothing_and_a_margin_counts(tmp_path):
    jobs, calls = make_jobs(tmp_path, n=2)
    assert run_jobs(jobs, progress=False, deadline=Deadline.after(-1)).left == 2 and calls == []
    assert run_jobs(jobs, progress=False, deadline=Deadline.after(60, margin=120)).stopped and calls == []
    assert not Deadline.after(60).allows(120) and Deadline.after(60).allows(30)


@pytest.mark.parametrize("text,seconds", [("600", 600), ("90s", 90), ("15m", 900), ("1h30m", 5400),
                                          ("2.5m", 150), (" 1H ", 3600)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1h30", "0", "-5m", "5 minutes"])
def test_bad_durations_are_named(text):
    with pytest.raises(argparse.ArgumentTypeError, match="duration"):
        parse_duration(text)


def test_no_results_folder_means_nothing_to_clean(tmp_path):
    assert remove_stale_temp_files(tmp_path / "not-there") == 0
    assert not (tmp_path / "not-there").exists()


def test_a_result_file_is_sorted_one_space_indented_json(tmp_path):
    rec = record("c" * 64)
    path = write_result(tmp_path / "r.json", rec)
    assert path.read_text() == json.dumps(rec, indent=1, sort_keys=True) + "\n"  # same record, same bytes


def test_a_schema_error_names_the_file_and_the_first_field_in_path_order(tmp_path):
    bad = record("0" * 64)
    bad["metrics"]["val"]["accuracy"] = 2.0
    bad["metrics"]["test"]["macro_f1"] = -1.0
    bad["provenance"]["wall_time_s"] = "slow"
    target = tmp_path / "x" / "seed0.json"
    with pytest.raises(ValueError) as info:
        write_result(target, bad)
    assert str(info.value).startswith(f"{target}: field metrics/test/macro_f1: -1.0 is less than")
    assert not target.exists()
    with pytest.raises(ValueError) as info:
        validate_result({k: v for k, v in record("0" * 64).items() if k != "schema_version"})
    assert str(info.value) == "result: field (top level): 'schema_version' is a required property"


def test_stale_temporary_files_are_all_removed_beside_a_live_one(tmp_path):
    folder = tmp_path / "t" / "random" / "linear_probe" / "10pct"
    folder.mkdir(parents=True)
    live = []
    for k in range(20):  # live and dead writers interleaved, so whatever order the folder lists them in
        if k % 2:
            live.append(folder / f".seed{k}.json.tmp-{os.getppid()}")
            live[-1].write_text("{")
        else:
            (folder / f".seed{k}.json.tmp-{999_999_000 + k}").write_text("{")  # writers long gone
    assert remove_stale_temp_files(tmp_path) == 10
    assert sorted(folder.iterdir()) == sorted(live)


def test_a_writable_check_creates_nested_folders_and_a_failure_says_what_to_pass(tmp_path):
    ensure_writable(tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c").is_dir() and not list((tmp_path / "a" / "b" / "c").iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError) as info:
        ensure_writable(blocker / "x", what="runs folder", flag="--runs-dir")
    assert str(info.value) == f"runs folder {blocker / 'x'} is not writable (Not a directory); pass --runs-dir to a writable folder"
    with pytest.raises(UserError) as info:
        ensure_writable(blocker / "y")
    assert str(info.value) == (f"results folder {blocker / 'y'} is not writable (Not a directory); pass --results-dir "
                               "to a writable folder")


def test_a_temporary_file_of_a_writer_that_cannot_be_signalled_is_kept_and_the_rest_still_cleaned(tmp_path,
                                                                                                 monkeypatch):
    import leaderboard.atomic as atomic

    foreign = tmp_path / ".seed0.json.tmp-4242"  # another user's writer: os.kill says PermissionError
    foreign.write_text("{")
    nested = tmp_path / "t" / "random"  # visited after the top folder's files
    nested.mkdir(parents=True)
    dead = [nested / f".seed{k}.json.tmp-{999_999_000 + k}" for k in range(3)]
    for p in dead:
        p.write_text("{")

    def kill(pid, sig):
        raise PermissionError if pid == 4242 else ProcessLookupError

    monkeypatch.setattr(atomic.os, "kill", kill)
    assert remove_stale_temp_files(tmp_path) == 3
    assert foreign.exists() and not any(p.exists() for p in dead)


def test_a_variant_has_its_own_folder_between_the_protocol_and_the_label_fraction(tmp_path):
    plain = result_path(tmp_path, "t", "vicreg", "cross_scanner", 0.1, 0, 3)
    held_out = result_path(tmp_path, "t", "vicreg", "cross_scanner", 0.1, 0, 3, variant="held-out/convex-flat")
    assert held_out.relative_to(tmp_path).parts[:5] == ("t", "vicreg", "cross_scanner", "held-out", "convex-flat")
    assert held_out.relative_to(tmp_path).parts[5:] == plain.relative_to(tmp_path).parts[3:]


def test_a_record_holds_the_job_and_what_it_ran_and_an_ablation_record_renames_only_the_job():
    protocol = {"name": "linear_probe", "version": 2, "hash": "a" * 64}
    record = build_record(key="k1", track={"id": "trk"}, protocol=protocol, init={"name": "vicreg", "kind": "ssl"},
                          fraction=1, pretrain_seed=np.int64(2), seed=np.int64(3), class_names=("4CH", "LVOT"),
                          metrics={"test": {"macro_f1": 0.5}}, train={"epochs": 1}, provenance={"host": "h"})
    assert record == {
        "schema_version": SCHEMA_VERSION,
        "job": {"key": "k1", "init": "vicreg", "protocol": "linear_probe", "fraction": 1.0, "pretrain_seed": 2,
                "seed": 3},
        "track": {"id": "trk"}, "protocol": protocol, "init": {"name": "vicreg", "kind": "ssl"},
        "class_names": ["4CH", "LVOT"], "metrics": {"test": {"macro_f1": 0.5}}, "train": {"epochs": 1},
        "provenance": {"host": "h"},
    }
    # Plain JSON types, whatever numpy scalars the grid passes.
    assert [type(record["job"][k]) for k in ("fraction", "pretrain_seed", "seed")] == [float, int, int]
    ablation = {"name": "variance_vs_size", "version": 1, "hash": "b" * 64}
    varied = {"axis": "diversity", "level": 2, "eval_protocol": "linear_probe"}
    again = ablation_record(record, key="k2", protocol=ablation, ablation=varied)
    assert again == {**record, "job": {**record["job"], "key": "k2", "protocol": "variance_vs_size"},
                     "protocol": ablation, "ablation": varied}
    assert record["job"]["key"] == "k1" and record["protocol"] == protocol  # the evaluation's record is untouched


def test_an_ablation_runs_variant_names_its_subset_and_evaluation_protocol():
    assert job_variant({"job": {}}) == ""
    assert job_variant({"ablation": {"axis": "diversity", "level": 2, "eval_protocol": "finetune"}}) == \
        "diversity-L2/finetune"
    assert job_variant({"ablation": {"axis": "size", "level": 0}}) == "size-L0"  # recorded before eval_protocol
    assert job_variant({"scanner": {"held_out": "Voluson E8", "eval_protocol": "linear_probe"}}) == \
        "held-out-Voluson_E8/linear_probe"


def test_unreadable_result_files_are_named_with_the_reason(tmp_path):
    bad_text = tmp_path / "latin1.json"
    bad_text.write_bytes(b'{"name": "caf\xe9"}')
    with pytest.raises(ResultFileError) as info:
        read_json(bad_text)
    assert str(info.value) == f"{bad_text}: not UTF-8 text (invalid continuation byte)"
    bad_json = tmp_path / "cut.json"
    bad_json.write_text('{"job": {"key": "k"')
    with pytest.raises(ResultFileError) as info:
        read_json(bad_json)
    assert str(info.value) == f"{bad_json}: not valid JSON: Expecting ',' delimiter at line 1 column 20"
    assert schema_errors([])[0][0] == "(top level)"  # a violation of the whole document has no field path


def test_result_files_are_the_visible_json_files_under_the_folders_given(tmp_path):
    (tmp_path / "t" / "a").mkdir(parents=True)
    for name in ("t/a/seed0.json", "t/a/.seed1.json", "t/a/notes.txt", "t/.hidden.json", "other.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "t" / "a" / "folder.json").mkdir()  # a folder named like a result is not one
    assert find_result_files(tmp_path / "t") == [tmp_path / "t" / "a" / "seed0.json"]
    assert find_result_files([tmp_path / "t", str(tmp_path / "other.json")]) == \
        [tmp_path / "other.json", tmp_path / "t" / "a" / "seed0.json"]
    with pytest.raises(ResultsError) as info:
        find_result_files(tmp_path / "missing")
    assert str(info.value) == (f"{tmp_path / 'missing'}: no such file or folder (give result JSON files or folders "
                               "holding them)")
