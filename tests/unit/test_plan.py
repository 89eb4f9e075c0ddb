"""`sslbench leaderboard --plan`: the runs a Δ would need for a given interval width, and the cost."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from leaderboard import analysis
from leaderboard.load import load_results
from leaderboard.plan import (
    CellPlan,
    costs,
    plan_cells,
    projected_half_width,
    runs_needed,
    variance_components,
)
from protocols.spec import known_protocol_hashes
from tests.unit.test_leaderboard import leaderboard, make_fixture


def test_variance_components_recover_the_spread_between_and_within_runs():
    rng = np.random.default_rng(0)
    runs, seeds, between_sd, within_sd = 400, 4, 0.03, 0.05
    run_effect = rng.normal(0, between_sd, runs)
    d = np.repeat(run_effect, seeds) + rng.normal(0, within_sd, runs * seeds)
    clusters = np.repeat(np.arange(runs), seeds)
    between, within, s = variance_components(d, clusters)
    assert s == seeds
    assert math.sqrt(between) == pytest.approx(between_sd, rel=0.15)
    assert math.sqrt(within) == pytest.approx(within_sd, rel=0.05)
    # One job per run: all of the spread is between runs.
    between, within, s = variance_components(run_effect, np.arange(runs))
    assert (within, s) == (0.0, 1.0) and between == pytest.approx(run_effect.var(ddof=1))
    with pytest.raises(ValueError, match="2 pretraining runs"):
        variance_components(d[:seeds], clusters[:seeds])


def test_runs_needed_is_the_first_number_of_runs_within_the_target():
    between, within, seeds = 0.05 ** 2, 0.05 ** 2, 2
    n = runs_needed(0.05, seeds, between, within)
    assert projected_half_width(n, seeds, between, within) <= 0.05 < projected_half_width(n - 1, seeds, between, within)
    # Seeds only narrow the within-run part: more of them never need more runs, and never fewer than
    # the between-run part alone needs.
    assert runs_needed(0.05, 8, between, within) <= n
    assert runs_needed(0.05, 10**9, between, within) == runs_needed(0.05, 1, between, 0.0)
    assert runs_needed(0.05, seeds, 0.0, 0.0) == 2
    assert runs_needed(1e-9, seeds, between, within) is None  # past MAX_RUNS
    assert projected_half_width(1, seeds, between, within) == math.inf


def test_the_half_width_now_is_the_pages_interval_of_the_delta(tmp_path):
    results, protocols = make_fixture(tmp_path, protocols=("linear_probe",), fractions=(0.01, 0.1),
                                      inits=("vicreg", "random", "imagenet"))
    known = known_protocol_hashes(protocols)
    tables = analysis.tables(load_results(results).main, known)
    page = analysis.deltas(tables, "macro_f1")
    cells = plan_cells(tables, 0.05)
    assert {(c.init, c.fraction) for c in cells} == {(i, f) for i in ("vicreg", "random") for f in (0.01, 0.1)}
    for c in cells:
        diff = page[("imagenet", "linear_probe", c.init, c.fraction)].comparison.diff
        assert c.half_width == pytest.approx((diff.high - diff.low) / 2)
        assert c.runs == 3 and c.seeds == 5
        # The decomposition reproduces the spread of the run means it was estimated from (when not clipped).
        if c.between > 0:
            assert projected_half_width(c.runs, c.seeds, c.between, c.within) == pytest.approx(c.half_width)
    assert plan_cells(tables, 0.05, fractions=[0.1]) == [c for c in cells if c.fraction == 0.1]
    assert plan_cells(tables, 0.05, protocols=["linear_probe"]) == cells
    assert plan_cells(tables, 0.05, protocols=["finetune"]) == []


def _cell(init: str, needed: int | None) -> CellPlan:
    return CellPlan("linear_probe", init, 0.01, 5, 5, 0.0, 0.0, 0.04, needed)


def test_costs_give_the_baselines_the_most_runs_any_init_needs_and_never_fewer_than_now():
    rows = []
    for init, kind, pretrain_s in (("vicreg", "ssl", 120.0), ("simclr", "ssl", 60.0), ("imagenet", "baseline", float("nan"))):
        for ps in range(5):
            for seed in range(2):
                rows.append({"init": init, "init_kind": kind, "pretrain_seed": ps, "seed": seed, "wall_time_s": 30.0,
                             "pretrain_wall_time_s": pretrain_s})
    runs = pd.DataFrame(rows)
    plan = {c.init: c for c in costs(runs, [_cell("vicreg", 9), _cell("vicreg", 7), _cell("simclr", 3)])}
    assert (plan["vicreg"].runs_planned, plan["simclr"].runs_planned, plan["imagenet"].runs_planned) == (9, 5, 9)
    assert plan["vicreg"].pretrain_s == 120.0 and plan["vicreg"].evaluation_s == 60.0  # 2 jobs × 30 s per run
    assert plan["imagenet"].pretrain_s == 0.0
    assert plan["vicreg"].seconds(9) == 9 * 180.0
    unreachable = {c.init: c for c in costs(runs, [_cell("vicreg", None), _cell("simclr", 3)])}
    assert unreachable["vicreg"].runs_planned is None and unreachable["imagenet"].runs_planned is None


def test_cli_prints_the_plan_and_refuses_a_width_that_is_not_in_points(tmp_path, capsys):
    results, protocols = make_fixture(tmp_path, protocols=("linear_probe",), fractions=(0.01, 0.1),
                                      inits=("vicreg", "imagenet"))
    args = ["--results", str(results), "--protocols", str(protocols)]
    assert leaderboard([*args, "--plan", "5", "--fraction", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "Δ vs imagenet within ±5 points" in out and "runs for the target" in out and "Whole track:" in out
    assert "| linear_probe | 1%" in out and "| linear_probe | 10%" not in out
    assert not (results.parent / "LEADERBOARD.md").exists()  # --plan writes nothing
    assert leaderboard([*args, "--plan", "0.05"]) == 0  # a small width is allowed; 0 and 100+ are not
    capsys.readouterr()
    assert leaderboard([*args, "--plan", "0"]) == 2
    assert "--plan 0" in capsys.readouterr().err
    assert leaderboard(["--results", str(tmp_path / "none"), "--plan", "5"]) == 0
    assert capsys.readouterr().out == "no results\n"


# ---- the variance-vs-size ablation ----------------------------------------------------------------

SUBSETS = [("diversity", 0, 4, 256), ("diversity", 1, 8, 256), ("diversity", 2, 16, 256), ("diversity", 3, 32, 256),
           ("size", 0, 4, 64), ("size", 1, 4, 128), ("size", 2, 4, 256)]  # (4, 256) is on both axes: 6 subsets


def _ablation_runs(runs_per_subset: int, seed: int = 0, copies: int = 1) -> pd.DataFrame:
    """Ablation rows as `load_results(...).ablation` has them: macro-F1 from a known design with noise per
    pretraining run and per seed; `copies` repeats every run's values under new pretraining seeds."""
    rng = np.random.default_rng(seed)
    rows = []
    for ev in ("linear_probe", "finetune"):
        for axis, level, subjects, frames in SUBSETS:
            for run in range(runs_per_subset):
                base = 0.3 + 0.02 * math.log2(subjects) + 0.005 * math.log2(frames) + rng.normal(0, 0.03)
                scores = base + rng.normal(0, 0.02, 2)
                for copy in range(copies):
                    for s, f1 in enumerate(scores):
                        rows.append({"track": "trk", "init": "simclr", "protocol": "variance_vs_size", "fraction": 0.01,
                                     "pretrain_seed": run + copy * runs_per_subset, "seed": s, "macro_f1": f1,
                                     "protocol_hash": "h", "wall_time_s": 10.0, "pretrain_wall_time_s": 50.0,
                                     "ablation": {"axis": axis, "level": level, "subjects": subjects, "frames": frames,
                                                  "videos": 2 * subjects, "eval_protocol": ev}})
    return pd.DataFrame(rows)


def test_the_slope_plan_starts_from_the_pages_fit_and_its_scaling_holds_for_replicated_runs():
    from leaderboard import ablation
    from leaderboard.plan import plan_slopes, slope_half_width

    runs = _ablation_runs(2)
    plans = plan_slopes(runs, 0.01)["trk"]
    assert [(p.init, p.eval_protocol) for p in plans] == [("simclr", "finetune"), ("simclr", "linear_probe")]
    level = 1 - 0.05 / 2  # the page's Bonferroni over the track's two fits
    expanded = ablation.expand(runs)
    for p in plans:
        g = expanded[expanded["eval_protocol"] == p.eval_protocol]
        assert p.difference == ablation.fit_slopes(ablation.run_points(g), confidence=level).difference
        assert (p.subsets, p.runs_per_subset) == (6, 2)
        half = (p.difference.high - p.difference.low) / 2
        assert slope_half_width(half, 12, 6, level, 2) == pytest.approx(half)
        n = p.runs_needed
        assert slope_half_width(half, 12, 6, level, n) <= 0.01 < slope_half_width(half, 12, 6, level, n - 1)
    # The same runs three times over: the fit's interval is what the projection says for 6 runs per subset,
    # but for the residual variance's degrees of freedom (3·RSS over 3·12 − 3 instead of RSS over 12 − 3:
    # exact copies add no scatter, which new runs would).
    tripled = ablation.expand(_ablation_runs(2, copies=3))
    for p in plans:
        g = tripled[tripled["eval_protocol"] == p.eval_protocol]
        fit = ablation.fit_slopes(ablation.run_points(g), confidence=level)
        projected = slope_half_width((p.difference.high - p.difference.low) / 2, 12, 6, level, 6)
        assert (fit.difference.high - fit.difference.low) / 2 == pytest.approx(projected * math.sqrt(27 / 33), rel=1e-9)
    assert slope_half_width(0.05, 12, 6, level, 0.5) == math.inf  # 3 points or fewer: no fit


def test_cli_prints_the_slope_plan_with_its_cost(tmp_path, capsys):
    from leaderboard.plan import plan_slopes, render_slope_plan

    text = render_slope_plan(_ablation_runs(3), 2.0)
    assert "difference of slopes within ±2 F1 points per doubling" in text
    # 6 subsets × (needed − 3) added runs, each 50 s of pretraining + 2 seeds × 10 s per evaluation protocol
    # (the subset on both axes counted once)
    needed = max(p.runs_needed for p in plan_slopes(_ablation_runs(3), 0.02)["trk"])
    added = 6 * (needed - 3)
    assert f"simclr: {needed} runs per subset, {added} more pretraining runs" in text
    assert f"≈ {added * 90 / 60:.0f} min at the median 1.5 min per run" in text
    from leaderboard import ablation
    from leaderboard.plan import ablation_run_seconds

    per_run = ablation_run_seconds(ablation.expand(_ablation_runs(3)))
    assert len(per_run) == 6 * 3 and set(per_run) == {90.0}  # (4 subjects, 256 frames) once, not per axis
    assert "rough guide" not in text and "rough guide" in render_slope_plan(_ablation_runs(1), 2.0)
    assert render_slope_plan(_ablation_runs(3).iloc[:0], 2.0) == "no ablation results\n"
    results, protocols = make_fixture(tmp_path, protocols=("linear_probe",), fractions=(0.01,),
                                      inits=("vicreg", "imagenet"))
    assert leaderboard(["--results", str(results), "--protocols", str(protocols), "--plan-slopes", "2"]) == 0
    assert "No fit to plan from (too few distinct subsets)" in capsys.readouterr().out  # its one ablation run
    assert leaderboard(["--results", str(results), "--plan-slopes", "100"]) == 2
