"""`sslbench ablation variance-vs-size` end to end on the tiny track: results, leaderboard section, figure."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.cli import main
from leaderboard.results import validate_result
from protocols.keys import record_key
from protocols.presets import load_preset
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
        assert record_key(record, load_preset(str(TINY))["protocols"]["variance_vs_size"]) == record["job"]["key"]
    assert seen == {("diversity", 1, 6), ("diversity", 2, 6), ("diversity", 3, 6),
                    ("size", 1, 4), ("size", 1, 6), ("size", 1, 8)}

    board = (tmp_path / "LEADERBOARD.md").read_text()
    assert "## Ablation: variance vs size of the pretraining videos" in board
    assert "#### simclr, linear_probe at 1 % labels" in board
    check_verdict(board, files)
    figure = np.asarray(Image.open(tmp_path / "figures" / f"variance_vs_size_{TRACK}.png").convert("L"), float)
    height, width = figure.shape
    assert width > 1.8 * height > 700  # two panels side by side (10 × 4 in at 120 dpi, legend below)
    halves = figure[:, : width // 2], figure[:, width // 2:]
    assert all(h.std() > 10 and (h < 128).mean() > 0.01 for h in halves)  # both panels drawn, not blank

    # A rerun finds every job finished: no file is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in files}
    capsys.readouterr()
    assert main(_args(tmp_path, "--no-leaderboard")) == 0
    assert {p: p.stat().st_mtime_ns for p in files} == stamps
    assert "0 runs written" in capsys.readouterr().err


EFFECT = r"(helps|hurts|shows no detectable effect)"
NUM = r"([+-]\d+\.\d)"
VERDICT = re.compile(
    rf"Diversity {EFFECT} \({NUM} F1 points per doubling of subjects at a fixed frame budget, CI \[{NUM}, {NUM}\]\); "
    rf"size {EFFECT} \({NUM} F1 points per doubling of frames at fixed subjects, CI \[{NUM}, {NUM}\]\); "
    r"(diversity helps more than size|size helps more than diversity|the data do not separate diversity from size) "
    rf"\(difference of slopes {NUM} \[{NUM}, {NUM}\], p=(\d\.\d{{3}}), (\d+) pretraining runs\)\.")


def _effect(low: float, high: float) -> str:
    return "helps" if low > 0 else "hurts" if high < 0 else "shows no detectable effect"


def check_verdict(board: str, files: list[Path]) -> None:
    """The section's sentence is one the renderer defines, and says what an independent least-squares
    fit (statsmodels) gives: one point per pretraining run of a distinct subset (its mean over the
    downstream seeds), the residual variance floored at the variance those means have from the
    seeds alone."""
    import statsmodels.api as sm
    from scipy import stats as sps

    rows = [json.loads(p.read_text()) for p in files]
    runs = pd.DataFrame([{"subjects": r["ablation"]["subjects"], "frames": r["ablation"]["frames"],
                          "pretrain_seed": r["job"]["pretrain_seed"], "seed": r["job"]["seed"],
                          "f1": r["metrics"]["test"]["macro_f1"]} for r in rows])
    runs = runs.drop_duplicates(["subjects", "frames", "pretrain_seed", "seed"])  # a subset on both axes is one run
    points = runs.groupby(["subjects", "frames", "pretrain_seed"])["f1"].agg(["mean", "var", "count"]).reset_index()
    x = sm.add_constant(np.column_stack([np.log2(points["subjects"]), np.log2(points["frames"])]))
    fit = sm.OLS(points["mean"].to_numpy(), x).fit()
    scale = max(fit.scale, float((points["var"] / points["count"]).mean()))
    cov = fit.normalized_cov_params * scale
    tcrit = sps.t.ppf(0.975, fit.df_resid)

    def ci_of(c):
        c = np.asarray(c, float)
        est, se = float(c @ fit.params), float(np.sqrt(c @ cov @ c))
        return 100 * est, 100 * (est - tcrit * se), 100 * (est + tcrit * se), 2 * sps.t.sf(abs(est) / se, fit.df_resid)

    div_fit, size_fit, diff_fit = ci_of([0, 1, 0]), ci_of([0, 0, 1]), ci_of([0, 1, -1])
    ci = {1: div_fit[1:3], 2: size_fit[1:3]}
    diff_ci = diff_fit[1:3]

    (line,) = [ln for ln in board.splitlines() if ln.startswith(("Diversity ", "Too few"))]
    m = VERDICT.fullmatch(line)
    assert m, line
    div_word, div, div_lo, div_hi, size_word, size, size_lo, size_hi, compare, d, d_lo, d_hi, p, n = m.groups()
    got = np.array([float(v) for v in (div, div_lo, div_hi, size, size_lo, size_hi, d, d_lo, d_hi)])
    want = np.array([*div_fit[:3], *size_fit[:3], *diff_fit[:3]])
    assert np.abs(got - want).max() <= 0.051, (got, want)  # the sentence rounds to 0.1 point
    assert float(p) == pytest.approx(diff_fit[3], abs=5e-4) and int(n) == len(points)
    assert div_word == _effect(*ci[1]) and size_word == _effect(*ci[2])
    assert compare == {"helps": "diversity helps more than size", "hurts": "size helps more than diversity",
                       "shows no detectable effect": "the data do not separate diversity from size"}[
        _effect(*diff_ci)]


def test_infeasible_levels_are_a_clear_error(tmp_path, capsys):
    preset = tmp_path / "big.toml"
    preset.write_text(TINY.read_text().replace("diversity = { subjects = [1, 2, 3], frames = 6 }",
                                               "diversity = { subjects = [2, 3, 9], frames = 12 }"))
    assert main(_args(tmp_path, "--preset", str(preset))) == 2
    assert "pretraining pool has 3 subjects, the protocol asks for 9" in capsys.readouterr().err
