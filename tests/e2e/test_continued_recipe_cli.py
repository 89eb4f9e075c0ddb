"""`sslbench ablation continued-recipe` end to end on the tiny track (SimCLR continued from ImageNet with each
recipe of protocols/continued_recipe.toml, two seeds): results and keys, the recipe each checkpoint recorded,
the candidate equal to the preset's recipe sharing the main grid's continued checkpoint, the leaderboard
section, and a rerun that finds everything finished."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from leaderboard.results import validate_result
from protocols.keys import record_key
from protocols.spec import load_protocol

TINY = Path(__file__).with_name("tiny_preset.toml")
TRACK = "synthetic-efficientnet_lite0-32px-tiny"


def _args(tmp: Path, *extra: str) -> list[str]:
    return ["ablation", "continued-recipe", "--method", "simclr", "--preset", str(TINY),
            "--results-dir", str(tmp / "results"), "--runs-dir", str(tmp / "runs"), "--cache-dir", str(tmp / "cache"),
            *extra]


def _files(tmp: Path) -> list[Path]:
    return sorted((tmp / "results").rglob("*.json"))


@pytest.mark.slow
def test_each_recipe_is_its_own_continued_run_the_preset_s_is_the_main_grid_s_and_a_rerun_does_nothing(
        tmp_path, capsys, one_thread):
    assert main(_args(tmp_path)) == 0
    spec = load_protocol("continued_recipe")
    recipes = spec.settings["recipes"]
    files = _files(tmp_path)
    assert len(files) == len(recipes) * 2  # linear_probe at 10 % × 2 seeds per recipe
    checkpoints: dict[str, set] = {}
    for path in files:
        record = json.loads(path.read_text())
        validate_result(record, str(path))
        ab = record["ablation"]
        assert record["job"]["protocol"] == "continued_recipe" and record["protocol"]["hash"] == spec.hash
        assert path.relative_to(tmp_path / "results").parts[:6] == (
            TRACK, "simclr@imagenet", "continued_recipe", f"recipe-{ab['recipe_name']}", "linear_probe", "10pct")
        continued = record["init"]["pretrain"]["continued"]
        assert continued["start"] == "imagenet" and record["init"]["start"] == "imagenet"
        # The run recorded every knob, and ran with the candidate's (the others at their defaults).
        assert ab["recipe"] == continued["recipe"]
        assert {k: continued["recipe"][k] for k in recipes[ab["recipe_name"]]} == recipes[ab["recipe_name"]]
        assert record_key(record) == record["job"]["key"]
        checkpoints.setdefault(ab["recipe_name"], set()).add(record["init"]["checkpoint_hash"])
    assert all(len(h) == 1 for h in checkpoints.values())
    assert len(set().union(*checkpoints.values())) == len(recipes)  # each recipe its own run

    # The tiny preset sets no continued recipe: its continued runs are the `method` candidate's checkpoint.
    from benchmark import track
    from benchmark.checkpoint import checkpoint_identity

    ctx = track.track_context(str(TINY), results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                              cache_dir=str(tmp_path / "cache"), new_results=False, start="imagenet")
    main_checkpoint = track.pretrain_run(ctx, "simclr", ctx.pretrain_cache(), 0)[2]
    assert checkpoints["method"] == {checkpoint_identity(main_checkpoint)}

    board = (tmp_path / "LEADERBOARD.md").read_text()
    assert "## Continued pretraining: the recipe, chosen on validation" in board
    assert f"{len(recipes)} recipes tried, the same ones for every method" in board
    assert "Chosen, per method: `simclr` `" in board and "No continued row of the main grid yet." in board
    assert "continued-pretraining-the-recipe-chosen-on-validation" in (tmp_path / "site" / "index.html").read_text()

    stamps = {p: p.stat().st_mtime_ns for p in files}
    capsys.readouterr()
    assert main(_args(tmp_path, "--no-leaderboard")) == 0
    err = capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert "0 runs written" in err and "pretraining simclr" not in err


def test_baselines_and_protocols_it_does_not_run_are_clear_errors_before_any_work(tmp_path, capsys):
    assert main(_args(tmp_path, "--method", "simclr,random")) == 2
    assert "--method random: the continued-recipe ablation continues SSL methods from ImageNet's weights" in \
        capsys.readouterr().err
    assert main(_args(tmp_path, "--protocol", "knn")) == 2
    assert "--protocol knn: the continued-recipe ablation evaluates with linear_probe" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not _files(tmp_path)
