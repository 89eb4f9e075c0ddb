"""The leaderboard's statistics against scipy and hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from leaderboard import stats


def test_mean_ci_matches_hand_computation_and_scipy():
    iv = stats.mean_ci([1, 2, 3, 4])
    # mean 2.5, s = 1.290994, t(0.975, 3) = 3.182446 → half width 3.182446 · 1.290994 / 2 = 2.054260
    assert iv.mean == 2.5 and iv.n == 4
    assert iv.low == pytest.approx(0.445740, abs=1e-6) and iv.high == pytest.approx(4.554260, abs=1e-6)
    x = np.random.default_rng(3).normal(0.7, 0.05, size=7)
    low, high = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    iv = stats.mean_ci(x)
    assert (iv.low, iv.high) == pytest.approx((low, high), abs=1e-12)


def test_mean_ci_of_too_few_values_has_no_interval():
    one = stats.mean_ci([0.5])
    assert one.mean == 0.5 and one.n == 1 and math.isnan(one.low) and math.isnan(one.high)
    none = stats.mean_ci([])
    assert none.n == 0 and math.isnan(none.mean)


def test_paired_t_test_below_six_pairs_matches_scipy():
    a = np.array([0.71, 0.74, 0.69, 0.77, 0.72])
    b = np.array([0.66, 0.70, 0.70, 0.71, 0.69])
    res = stats.paired_comparison(a, b)
    assert res.test == "t-test"
    assert res.p == pytest.approx(sps.ttest_rel(a, b).pvalue, abs=1e-12)
    assert res.diff.mean == pytest.approx(0.034, abs=1e-12)
    ci = sps.t.interval(0.95, 4, loc=(a - b).mean(), scale=sps.sem(a - b))
    assert (res.diff.low, res.diff.high) == pytest.approx(ci, abs=1e-12)


def test_wilcoxon_from_six_pairs_with_its_exact_minimum_p():
    a = np.array([0.80, 0.75, 0.79, 0.82, 0.78, 0.81])
    b = a - np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    res = stats.paired_comparison(a, b)
    assert res.test == "wilcoxon"
    # All six differences positive: the exact two-sided p is 2 / 2^6.
    assert res.p == pytest.approx(2 / 64, abs=1e-12)
    a[2] = b[2] - 0.035  # one sign flips
    assert stats.paired_comparison(a, b).p == pytest.approx(sps.wilcoxon(a - b).pvalue, abs=1e-12)
    assert stats.WILCOXON_MIN_N == 6 and 2 / 2**5 > 0.05 > 2 / 2**6


def test_paired_comparison_edge_cases():
    same = stats.paired_comparison([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same.p == 1.0 and same.diff.mean == 0.0
    single = stats.paired_comparison([0.5], [0.4])
    assert single.test == "none" and math.isnan(single.p)
    with pytest.raises(ValueError, match="one value per seed"):
        stats.paired_comparison([0.5, 0.6], [0.4])


def test_holm_against_hand_computed_values_and_nan_left_out():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → monotone 0.06
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    with_nan = stats.holm([0.01, np.nan, 0.04])
    assert math.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx([0.02, 0.04])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert np.isnan(stats.holm([np.nan])).all()


def test_holm_agrees_with_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(1).uniform(0, 0.2, size=9)
    assert stats.holm(p) == pytest.approx(multitest.multipletests(p, method="holm")[1])


def test_average_ranks_with_ties():
    scores = pd.DataFrame({"a": [0.9, 0.5, 0.7], "b": [0.8, 0.6, 0.7], "c": [0.1, 0.4, 0.2]})
    # task 1: a 1, b 2, c 3; task 2: b 1, a 2, c 3; task 3: a and b tie for 1.5, c 3
    assert stats.average_ranks(scores).to_dict() == pytest.approx({"a": 1.5, "b": 1.5, "c": 3.0})


def test_friedman_matches_scipy_and_needs_three_inits():
    rng = np.random.default_rng(2)
    scores = pd.DataFrame(rng.uniform(size=(6, 4)), columns=list("abcd"))
    res = stats.friedman(scores)
    ref = sps.friedmanchisquare(*[scores[c] for c in scores.columns])
    assert (res.statistic, res.p) == pytest.approx((ref.statistic, ref.pvalue))
    assert (res.k, res.n_blocks) == (4, 6)
    tied = stats.friedman(pd.DataFrame([[0.5, 0.5, 0.5]] * 3, columns=list("abc")))
    assert (tied.statistic, tied.p) == (0.0, 1.0)
    with pytest.raises(ValueError, match=">= 3 inits"):
        stats.friedman(scores[["a", "b"]])


def test_nemenyi_cd_against_demsar_table():
    # Demšar (2006), table 5(a): q_0.05 = 1.960, 2.343, 2.569, 2.728 for k = 2..5.
    for k, q in [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728)]:
        assert stats.nemenyi_cd(k, 1) / math.sqrt(k * (k + 1) / 6) == pytest.approx(q, abs=1e-3)
    assert stats.nemenyi_cd(5, 6) == pytest.approx(2.728 * math.sqrt(30 / 36), abs=1e-3)


def test_min_blocks_for_nemenyi():
    # k = 5: CD(2) = 2.728·√(30/12) = 4.31 ≥ 4, CD(3) = 2.728·√(30/18) = 3.52 < 4
    assert stats.min_blocks_for_nemenyi(5) == 3
    for k in (3, 4, 6, 8):
        n = stats.min_blocks_for_nemenyi(k)
        assert stats.nemenyi_cd(k, n) < k - 1 <= stats.nemenyi_cd(k, n - 1) or n == 2


def test_iqm_is_the_25_percent_trimmed_mean():
    assert stats.iqm(np.arange(1, 9)) == 4.5  # drops 1, 2 and 7, 8
    assert stats.iqm([[1, 100], [2, 3]]) == 2.5  # flattened over runs and tasks


def test_iqm_interval_is_a_seeded_stratified_bootstrap():
    tasks = [np.array([0.1, 0.4, 0.35, 0.2]), np.array([0.8, 0.7, 0.9])]
    a = stats.iqm_interval(tasks, reps=500, seed=7)
    assert a == stats.iqm_interval(tasks, reps=500, seed=7)
    assert a != stats.iqm_interval(tasks, reps=500, seed=8)
    assert a.low <= a.mean <= a.high and a.n == 7
    # Reference: the same draws, one task at a time, one resample at a time.
    rng = np.random.default_rng(7)
    draws = [t[rng.integers(0, t.size, (500, t.size))] for t in tasks]
    boot = [sps.trim_mean(np.concatenate([d[r] for d in draws]), 0.25) for r in range(500)]
    assert (a.low, a.high) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
    # Stratified: every resample keeps 3 runs of each task, so the IQM of {0,0,0,1,1,1} never moves.
    fixed = stats.iqm_interval([np.zeros(3), np.ones(3)], reps=200, seed=0)
    assert (fixed.mean, fixed.low, fixed.high) == (0.5, 0.5, 0.5)


def test_probability_of_improvement_against_hand_computation_and_mann_whitney():
    x = [[1, 2, 3], [2, 3]]
    y = [[0, 1, 2], [3, 4]]
    # task 1: (1.5 + 2.5 + 3) / 9 = 7/9; task 2: 0.5 / 4 = 1/8
    assert stats.probability_of_improvement(x, y) == pytest.approx((7 / 9 + 1 / 8) / 2)
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=5), rng.normal(size=6)
    u = sps.mannwhitneyu(a, b).statistic
    assert stats.probability_of_improvement([a], [b]) == pytest.approx(u / 30)
    with pytest.raises(ValueError, match="same, non-empty list"):
        stats.probability_of_improvement([a], [])


def test_probability_of_improvement_interval():
    better = stats.probability_of_improvement_interval([[0.9, 0.8, 0.85]], [[0.1, 0.2, 0.3]], reps=300)
    assert (better.mean, better.low, better.high) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(5)
    x, y = [rng.normal(size=5) for _ in range(3)], [rng.normal(size=5) for _ in range(3)]
    a = stats.probability_of_improvement_interval(x, y, reps=400, seed=3)
    assert a == stats.probability_of_improvement_interval(x, y, reps=400, seed=3)
    assert 0 <= a.low <= a.mean <= a.high <= 1 and a.high - a.low > 0.1
