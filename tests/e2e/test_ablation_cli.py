"""`sslbench ablation variance-vs-size` end to end on the tiny track: results, leaderboard section, figure."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from leaderboard.results import validate_result
from protocols.spec import load_protocol

TINY = Path(__file__).with_name("tiny_preset.toml")
TRACK = "synthetic-efficientnet_lite0-32px-tiny"
# 1 method × (3 diversity + 3 size levels) × linear_probe × 2 seeds
EXPECTED = 6 * 2


def _args(tmp: Path, *extra: str) -> list[str]:
    return ["ablation", "variance-vs-size", "--method", "simclr", "--preset", str(TINY),
            "--results-dir", str(tmp / "results"), "--runs-dir", str(tmp / "runs"),
            "--cache-dir", str(tmp / "cache"), *extra]


@pytest.mark.slow
def test_ablation_writes_results_renders_its_section_and_resumes(tmp_path, capsys):
    assert main(_args(tmp_path)) == 0
    files = sorted((tmp_path / "results").rglob("*.json"))
    assert len(files) == EXPECTED
    spec = load_protocol("variance_vs_size")
    seen = set()
    for path in files:
        record = json.loads(path.read_text())
        validate_result(record, str(path))
        ab = record["ablation"]
        assert record["job"]["protocol"] == "variance_vs_size" and record["protocol"]["hash"] == spec.hash
        assert record["job"]["fraction"] == 0.01 and ab["eval_protocol"] == "linear_probe"
        assert path.relative_to(tmp_path / "results").parts[:4] == (
            TRACK, "simclr", "variance_vs_size", f"{ab['axis']}-L{ab['level']}")
        seen.add((ab["axis"], ab["subjects"], ab["frames"]))
    assert seen == {("diversity", 1, 6), ("diversity", 2, 6), ("diversity", 3, 6),
                    ("size", 1, 4), ("size", 1, 6), ("size", 1, 8)}

    board = (tmp_path / "LEADERBOARD.md").read_text()
    assert "## Ablation: variance vs size of the pretraining videos" in board
    assert "#### simclr, linear_probe at 1 % labels" in board
    assert any(w in board for w in ("Diversity helps", "Diversity hurts", "Diversity shows no detectable effect"))
    assert (tmp_path / "figures" / f"variance_vs_size_{TRACK}.png").exists()

    # A rerun finds every job finished: no file is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in files}
    capsys.readouterr()
    assert main(_args(tmp_path, "--no-leaderboard")) == 0
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert "0 runs written" in capsys.readouterr().err


def test_infeasible_levels_are_a_clear_error(tmp_path, capsys):
    preset = tmp_path / "big.toml"
    preset.write_text(TINY.read_text().replace("diversity = { subjects = [1, 2, 3], frames = 6 }",
                                               "diversity = { subjects = [2, 3, 9], frames = 12 }"))
    assert main(_args(tmp_path, "--preset", str(preset))) == 2
    assert "pretraining pool has 3 subjects, the protocol asks for 9" in capsys.readouterr().err
