"""`sslbench ablation positives` end to end on the tiny track (SimCLR with same-frame and temporal positives, two
pretraining runs, two seeds): results, keys and folders, the positives each checkpoint recorded, the mode equal
to the preset's sharing the main grid's checkpoint, the leaderboard section with its paired test, and a rerun
that finds everything finished."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from leaderboard.results import validate_result
from protocols.keys import record_key
from protocols.presets import load_preset
from protocols.spec import load_protocol

TINY = Path(__file__).with_name("tiny_preset.toml")
TRACK = "synthetic-efficientnet_lite0-32px-tiny"


def _args(tmp: Path, *extra: str) -> list[str]:
    return ["ablation", "positives", "--method", "simclr", "--preset", str(TINY),
            "--results-dir", str(tmp / "results"), "--runs-dir", str(tmp / "runs"), "--cache-dir", str(tmp / "cache"),
            *extra]


def _files(tmp: Path) -> list[Path]:
    return sorted((tmp / "results").rglob("*.json"))


@pytest.mark.slow
def test_each_mode_is_its_own_run_the_preset_s_is_the_main_grid_s_and_the_page_pairs_them(tmp_path, capsys,
                                                                                          one_thread):
    assert main(_args(tmp_path)) == 0
    spec = load_protocol("positives", load_preset(str(TINY))["protocols"]["positives"])
    modes, runs = spec.settings["modes"], spec.settings["pretrain_seeds"]
    files = _files(tmp_path)
    assert len(files) == len(modes) * len(runs) * 2  # linear_probe at 10 % × 2 seeds per run
    checkpoints: dict[tuple[str, int], set] = {}
    for path in files:
        record = json.loads(path.read_text())
        validate_result(record, str(path))
        ab = record["ablation"]
        assert record["job"]["protocol"] == "positives" and record["protocol"]["hash"] == load_protocol("positives").hash
        assert ab["reference"] == "same_frame" and ab["positives"] == record["init"]["pretrain"]["positives"]
        tag = "positives-" + ab["positives"].replace("_", "-").replace(":", "-")
        assert path.relative_to(tmp_path / "results").parts[:6] == (
            TRACK, "simclr", "positives", tag, "linear_probe", "10pct")
        assert record_key(record) == record["job"]["key"]
        checkpoints.setdefault((ab["positives"], record["job"]["pretrain_seed"]), set()).add(
            record["init"]["checkpoint_hash"])
    assert all(len(h) == 1 for h in checkpoints.values())
    assert len(set().union(*checkpoints.values())) == len(modes) * len(runs)  # each (mode, seed) its own run

    # The tiny preset draws same-frame positives (PretrainConfig's default): that mode is the main grid's run.
    from benchmark import track
    from benchmark.checkpoint import checkpoint_identity

    ctx = track.track_context(str(TINY), results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                              cache_dir=str(tmp_path / "cache"), new_results=False)
    main_checkpoint = track.pretrain_run(ctx, "simclr", ctx.pretrain_cache(), 0)[2]
    assert checkpoints[("same_frame", 0)] == {checkpoint_identity(main_checkpoint)}

    board = (tmp_path / "LEADERBOARD.md").read_text()
    assert "## Positives: does the video's time help?" in board and "reference mode: `same_frame`" in board
    assert "1 comparison tested" in board  # two pretraining runs: a paired test
    assert "positives-does-the-videos-time-help" in (tmp_path / "site" / "index.html").read_text()

    stamps = {p: p.stat().st_mtime_ns for p in files}
    capsys.readouterr()
    assert main(_args(tmp_path, "--no-leaderboard")) == 0
    err = capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert "0 runs written" in err and "pretraining simclr" not in err


def test_baselines_and_protocols_it_does_not_run_are_clear_errors_before_any_work(tmp_path, capsys):
    assert main(_args(tmp_path, "--method", "simclr,imagenet")) == 2
    assert "--method imagenet: the positives ablation pretrains SSL methods" in capsys.readouterr().err
    assert main(_args(tmp_path, "--protocol", "finetune")) == 2
    assert "--protocol finetune: the positives ablation evaluates with linear_probe" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not _files(tmp_path)
