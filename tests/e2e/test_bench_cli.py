"""`sslbench bench` end to end on a tiny track, and its answers to bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from leaderboard.regenerate import page_diff
from leaderboard.results import validate_result
from leaderboard.validate import validate_paths
from protocols.keys import record_key
from protocols.presets import PRESETS
from protocols.spec import known_protocol_hashes

TINY = Path(__file__).with_name("tiny_preset.toml")
TRACK = "synthetic-efficientnet_lite0-32px-tiny"
# vicreg + imagenet + random × one pretraining seed × (linear_probe and knn: 2 seeds at 10 % + 1 at 100 %,
# where every seed has the same subset + finetune: 2 fractions × 1 seed)
EXPECTED_JOBS = 3 * (3 + 3 + 2)


def bench_command(tmp: Path, *extra: str, preset: Path = TINY) -> list[str]:
    return [sys.executable, "-m", "benchmark", "bench", "--method", "vicreg", "--preset", str(preset),
            "--results-dir", str(tmp / "results"), "--runs-dir", str(tmp / "runs"),
            "--cache-dir", str(tmp / "cache"), *extra]


def run_bench(tmp: Path, *extra: str, preset: Path = TINY) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(bench_command(tmp, *extra, preset=preset), capture_output=True, text=True, env=env, timeout=600)


def result_files(tmp: Path) -> list[Path]:
    return sorted((tmp / "results").rglob("*.json"))


@pytest.mark.slow
def test_bench_writes_valid_results_for_the_method_and_its_baselines_and_a_rerun_does_nothing(tmp_path):
    first = run_bench(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    files = result_files(tmp_path)
    assert len(files) == EXPECTED_JOBS
    inits = {p.relative_to(tmp_path / "results").parts[1] for p in files}
    assert inits == {"vicreg", "imagenet", "random"}
    keys = set()
    for path in files:
        record = json.loads(path.read_text())
        validate_result(record, str(path))
        rel = path.relative_to(tmp_path / "results").parts
        assert rel[0] == TRACK == record["track"]["id"]
        assert (rel[1], rel[2], rel[4], rel[5]) == (record["job"]["init"], record["job"]["protocol"],
                                                    f"pretrain-seed{record['job']['pretrain_seed']}",
                                                    f"seed{record['job']['seed']}.json")
        assert record["provenance"]["dataset_fingerprints"]["downstream"]
        keys.add(record["job"]["key"])
    assert len(keys) == EXPECTED_JOBS
    vicreg = json.loads(next(p for p in files if "vicreg" in p.parts).read_text())
    assert vicreg["init"]["kind"] == "ssl" and len(vicreg["init"]["checkpoint_hash"]) == 64
    assert "pretrain" in vicreg["provenance"]["dataset_fingerprints"]
    diagnostics = vicreg["init"]["pretrain"]["diagnostics"]
    assert diagnostics["encoder_change"] > 0 and {"before", "after", "problems"} <= set(diagnostics)
    random = json.loads(next(p for p in files if "random" in p.parts).read_text())
    assert random["init"]["pretrain"]["steps"] == 0 and random["init"]["pretrain"]["diagnostics"]["encoder_change"] == 0
    assert random["init"]["checkpoint_hash"] != vicreg["init"]["checkpoint_hash"]
    # The leaderboard beside the results was refreshed: it is exactly what these results give, and it
    # holds the method and both baselines.
    board = tmp_path / "LEADERBOARD.md"
    assert "leaderboard not refreshed" not in first.stderr and f"leaderboard: {board}" in first.stderr
    text = board.read_text()
    assert page_diff(tmp_path / "results", board, known_protocol_hashes()) == []
    assert all(f"| {init}" in text for init in ("vicreg", "imagenet", "random"))
    assert (tmp_path / "figures" / f"f1_vs_fraction_{TRACK}_linear_probe.png").exists()
    # The k-NN protocol has its own table, with the method and both baselines in it.
    knn_section = text.split("### knn (v1")[1].split("\n### ")[0]
    assert all(f"| {init}" in knn_section for init in ("vicreg", "imagenet", "random"))
    knn = [json.loads(p.read_text()) for p in files if p.relative_to(tmp_path / "results").parts[2] == "knn"]
    assert len(knn) == 3 * 3 and all(r["train"]["k"] in (1, 5, 20) for r in knn)
    assert "The linear probe and the k-NN are deterministic given their subset" in text
    problems, n_files = validate_paths([tmp_path / "results"], known_protocol_hashes())  # `sslbench validate`
    assert problems == [] and n_files == EXPECTED_JOBS
    assert not list((tmp_path / "results").rglob(".*tmp-*"))

    mtimes = {p: p.stat().st_mtime_ns for p in files}
    again = run_bench(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{EXPECTED_JOBS} already finished, 0 to run" in again.stderr
    assert "pretraining" not in again.stderr and "extracting features" not in again.stderr
    assert {p: p.stat().st_mtime_ns for p in result_files(tmp_path)} == mtimes
    # Every file carries the key its own record implies (what `sslbench validate --rekey` recomputes).
    assert all(record_key(json.loads(p.read_text())) == json.loads(p.read_text())["job"]["key"] for p in files)

    # The track grows a downstream seed: only the new jobs run, the finished ones keep their keys.
    grown = tmp_path / "grown" / TINY.name
    grown.parent.mkdir()
    text = TINY.read_text()
    assert text.count("[protocols.linear_probe]\nseeds = [0, 1]\n") == 1
    grown.write_text(text.replace("[protocols.linear_probe]\nseeds = [0, 1]\n", "[protocols.linear_probe]\nseeds = [0, 1, 2]\n"))
    more = run_bench(tmp_path, preset=grown)
    assert more.returncode == 0, more.stderr[-3000:]
    assert f"{EXPECTED_JOBS + 3} jobs, {EXPECTED_JOBS} already finished, 3 to run" in more.stderr  # 10 % × seed 2 × 3 inits
    assert "pretraining" not in more.stderr
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes and len(result_files(tmp_path)) == EXPECTED_JOBS + 3


def _comparable(record: dict) -> dict:
    """What a result says, without when, where and how long: the metrics and how the model was trained."""
    train = {k: v for k, v in record["train"].items() if k != "device"}
    return {"job": record["job"], "metrics": record["metrics"], "train": train,
            "checkpoint_hash": record["init"]["checkpoint_hash"]}


@pytest.mark.slow
def test_the_same_command_in_clean_folders_gives_identical_metrics(tmp_path):
    """Reproducible on one kind of machine: seeded everything, deterministic algorithms on the CPU."""
    runs = []
    for name in ("a", "b"):
        done = run_bench(tmp_path / name, "--no-leaderboard")
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append({p.relative_to(tmp_path / name / "results"): _comparable(json.loads(p.read_text()))
                     for p in result_files(tmp_path / name)})
    assert len(runs[0]) == EXPECTED_JOBS and runs[0].keys() == runs[1].keys()
    for path in runs[0]:
        assert runs[0][path] == runs[1][path], f"{path} differs between two identical runs"


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def _dirs(tmp: Path) -> list[str]:
    return ["--results-dir", str(tmp / "results"), "--runs-dir", str(tmp / "runs"), "--cache-dir", str(tmp / "c")]


def test_unknown_method_lists_the_known_ones(tmp_path, capsys):
    code, err = _cli(capsys, "bench", "--method", "simclrr", "--preset", str(TINY), *_dirs(tmp_path))
    assert code == 2 and "simclrr" in err and "vicreg" in err


def test_unknown_preset_and_protocol_are_named(tmp_path, capsys):
    code, err = _cli(capsys, "bench", "--method", "random", "--preset", "fastest", *_dirs(tmp_path))
    assert code == 2 and "unknown preset 'fastest'" in err
    assert all(name in err for name in PRESETS), err  # every preset is offered, whatever their number
    code, err = _cli(capsys, "bench", "--method", "random", "--preset", str(TINY), "--protocol", "svm",
                     *_dirs(tmp_path))
    assert code == 2 and "unknown protocol 'svm'" in err and "linear_probe, finetune, knn" in err


def test_bad_shard_is_named(tmp_path, capsys):
    code, err = _cli(capsys, "run", "--method", "random", "--preset", str(TINY), "--shard", "4/4", *_dirs(tmp_path))
    assert code == 2 and "--shard expects i/N" in err


def test_a_corrupt_checkpoint_is_named(tmp_path, capsys):
    bad = tmp_path / "encoder.safetensors"
    bad.write_bytes(b"\x00not a checkpoint")
    code, err = _cli(capsys, "evaluate", "--checkpoint", str(bad), "--protocol", "linear_probe",
                     "--preset", str(TINY), *_dirs(tmp_path))
    assert code == 2 and str(bad) in err


def test_a_results_folder_that_is_not_writable_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, err = _cli(capsys, "bench", "--method", "random", "--preset", str(TINY),
                     "--results-dir", str(blocker / "results"), "--runs-dir", str(tmp_path / "runs"),
                     "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and "is not writable" in err and "--results-dir" in err
    assert not (tmp_path / "c").exists()  # nothing was built
