"""`sslbench ablation learning-curve` end to end on the tiny track (budgets 2 and 4 steps, SimCLR, two
seeds): one shard at a time, results and keys, the checkpoint its preset's budget shares with the main grid,
the leaderboard section and figure, and a rerun that finds everything finished."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from leaderboard.results import validate_result
from protocols.keys import record_key
from protocols.spec import load_protocol

TINY = Path(__file__).with_name("tiny_preset.toml")
TRACK = "synthetic-efficientnet_lite0-32px-tiny"


def _args(tmp: Path, *extra: str) -> list[str]:
    return ["ablation", "learning-curve", "--method", "simclr", "--preset", str(TINY),
            "--results-dir", str(tmp / "results"), "--runs-dir", str(tmp / "runs"), "--cache-dir", str(tmp / "cache"),
            *extra]


def _files(tmp: Path) -> list[Path]:
    return sorted((tmp / "results").rglob("*.json"))


@pytest.mark.slow
def test_learning_curve_pretrains_each_budget_once_shares_the_preset_s_and_resumes(tmp_path, capsys, one_thread):
    # Shard 0 of 2 takes the largest budget first; shard 1 the other.
    assert main(_args(tmp_path, "--shard", "0/2", "--no-leaderboard")) == 0
    assert {p.relative_to(tmp_path / "results").parts[3] for p in _files(tmp_path)} == {"steps-4"}
    assert main(_args(tmp_path, "--shard", "1/2")) == 0
    files = _files(tmp_path)
    assert len(files) == 2 * 2  # 2 budgets × linear_probe at 10 % × 2 seeds
    spec = load_protocol("learning_curve")
    budgets = {}
    for path in files:
        record = json.loads(path.read_text())
        validate_result(record, str(path))
        ab = record["ablation"]
        assert record["job"]["protocol"] == "learning_curve" and record["protocol"]["hash"] == spec.hash
        assert (record["job"]["fraction"], ab["eval_protocol"], ab["axis"]) == (0.1, "linear_probe", "steps")
        assert path.relative_to(tmp_path / "results").parts[:6] == (
            TRACK, "simclr", "learning_curve", f"steps-{ab['steps']}", "linear_probe", "10pct")
        assert record["init"]["pretrain"]["steps"] == ab["steps"] and ab["level"] == [2, 4].index(ab["steps"])
        assert "encoder_change" in record["init"]["pretrain"]["diagnostics"]
        assert record_key(record) == record["job"]["key"]
        budgets.setdefault(ab["steps"], set()).add(record["init"]["checkpoint_hash"])
    assert sorted(budgets) == [2, 4] and all(len(h) == 1 for h in budgets.values())
    assert budgets[2] != budgets[4]  # each budget its own run, not a snapshot of the longer one

    # The preset's budget (2 steps) is the main grid's checkpoint: `sslbench bench` finds it and pretrains nothing.
    from benchmark import track
    from benchmark.checkpoint import checkpoint_identity

    ctx = track.track_context(str(TINY), results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                              cache_dir=str(tmp_path / "cache"), new_results=False)
    main_checkpoint = track.pretrain_run(ctx, "simclr", ctx.pretrain_cache(), 0)[2]
    assert budgets[2] == {checkpoint_identity(main_checkpoint)}
    assert len([p for p in ctx.pretrain_dir.iterdir() if p.name.startswith("simclr-")]) == 2

    board = (tmp_path / "LEADERBOARD.md").read_text()
    assert "## Learning curves: score against pretraining budget" in board
    assert "#### Steps until the pool k-NN rises by 5 points" in board
    assert "linear_probe at 10 %: flattened (the last doubling of the budget, 2 → 4 steps, raised" in board
    assert "learning-curves-score-against-pretraining-budget" in (tmp_path / "site" / "index.html").read_text()
    figure = np.asarray(Image.open(tmp_path / "figures" / f"learning_curve_{TRACK}.png").convert("L"), float)
    height, width = figure.shape
    assert width > 1.8 * height > 700  # two panels side by side
    halves = figure[:, : width // 2], figure[:, width // 2:]
    assert all(h.std() > 10 and (h < 128).mean() > 0.01 for h in halves)  # both panels drawn, not blank

    # A rerun finds every pretraining run and job finished: nothing is pretrained or rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in files}
    capsys.readouterr()
    assert main(_args(tmp_path, "--no-leaderboard")) == 0
    err = capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert "0 runs written" in err and "pretraining simclr" not in err


def test_baselines_and_protocols_the_curve_does_not_run_are_clear_errors_before_any_work(tmp_path, capsys):
    assert main(_args(tmp_path, "--method", "simclr,imagenet")) == 2
    err = capsys.readouterr().err
    assert "--method imagenet: the learning curve pretrains SSL methods; the imagenet and random baselines are its " \
           "reference lines" in err
    assert main(_args(tmp_path, "--protocol", "finetune")) == 2
    assert "--protocol finetune: the learning curve evaluates with linear_probe (eval_protocols of " \
           "protocols/learning_curve.toml; a preset's [protocols.learning_curve] table may change it)" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not _files(tmp_path)  # no data was even prepared
