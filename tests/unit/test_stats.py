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


def test_the_paired_test_is_the_t_test_at_every_n_and_matches_scipy():
    rng = np.random.default_rng(6)
    for n in (2, 3, 5, 6, 10):
        a, b = rng.normal(0.7, 0.05, n), rng.normal(0.68, 0.05, n)
        res = stats.paired_comparison(a, b)
        assert res.p == pytest.approx(sps.ttest_rel(a, b).pvalue, abs=1e-12)
        ci = sps.t.interval(0.95, n - 1, loc=(a - b).mean(), scale=sps.sem(a - b))
        assert (res.diff.low, res.diff.high) == pytest.approx(ci, abs=1e-12)
        assert res.diff.n == n and not res.constant


def test_the_test_can_fire_with_few_replicates_where_a_rank_test_cannot():
    # Three pretraining runs, each clearly better: the t-test rejects; an exact signed-rank or
    # sign-flip test could not go below 2/2^3 = 0.25 with three pairs.
    a = np.array([0.80, 0.82, 0.81])
    b = np.array([0.70, 0.71, 0.705])
    assert stats.paired_comparison(a, b).p < 0.01
    assert sps.wilcoxon(a - b).pvalue == pytest.approx(0.25)


def test_holm_against_hand_computed_values_and_nan_left_out():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → monotone 0.06
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    with_nan = stats.holm([0.01, np.nan, 0.04])
    assert math.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx([0.02, 0.04])
    with_none = stats.holm([0.01, None, 0.04])  # missing p-values may come as None too
    assert math.isnan(with_none[1]) and with_none[[0, 2]] == pytest.approx([0.02, 0.04])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert np.isnan(stats.holm([np.nan])).all()
    assert stats.holm([0.03]).tolist() == [0.03] and stats.holm([np.nan, 0.03])[1] == 0.03  # a family of one


def test_holm_agrees_with_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(1).uniform(0, 0.2, size=9)
    assert stats.holm(p) == pytest.approx(multitest.multipletests(p, method="holm")[1])


def test_average_ranks_with_ties():
    scores = pd.DataFrame({"a": [0.9, 0.5, 0.7], "b": [0.8, 0.6, 0.7], "c": [0.1, 0.4, 0.2]})
    # task 1: a 1, b 2, c 3; task 2: b 1, a 2, c 3; task 3: a and b tie for 1.5, c 3
    assert stats.average_ranks(scores).to_dict() == pytest.approx({"a": 1.5, "b": 1.5, "c": 3.0})


def test_iqm_is_the_25_percent_trimmed_mean():
    assert stats.iqm(np.arange(1, 9)) == 4.5  # drops 1, 2 and 7, 8
    assert stats.iqm([[1, 100], [2, 3]]) == 2.5  # flattened over runs and tasks


def test_iqm_interval_is_a_seeded_hierarchical_bootstrap():
    # Two tasks, two pretraining runs each (the same runs in both tasks), three seeds per run.
    tasks = [[np.array([0.1, 0.4, 0.35]), np.array([0.2, 0.25, 0.3])],
             [np.array([0.8, 0.7, 0.9]), np.array([0.6, 0.65, 0.7])]]
    a = stats.iqm_interval(tasks, reps=500, seed=7)
    assert a == stats.iqm_interval(tasks, reps=500, seed=7)
    assert a != stats.iqm_interval(tasks, reps=500, seed=8)
    assert a.low <= a.mean <= a.high and a.n == 12
    assert a.mean == pytest.approx(sps.trim_mean(np.concatenate([np.concatenate(t) for t in tasks]), 0.25))
    # Reference: one replicate at a time, pretraining runs drawn once for both tasks, then the seeds.
    rng = np.random.default_rng(7)
    pick = rng.integers(0, 2, (500, 2))
    inner = [[np.asarray(c)[rng.integers(0, 3, (500, 3))] for c in t] for t in tasks]
    boot = [sps.trim_mean(np.concatenate([inner[t][j][r] for t in range(2) for j in pick[r]]), 0.25)
            for r in range(500)]
    assert (a.low, a.high) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
    # Unequal seeds per run take the general path and give the same kind of answer.
    ragged = [[np.array([0.1, 0.4]), np.array([0.2, 0.25, 0.3])], [np.array([0.8]), np.array([0.6, 0.7])]]
    r = stats.iqm_interval(ragged, reps=300, seed=1)
    assert r.low <= r.mean <= r.high and r.n == 8


def test_the_hierarchical_bootstrap_sees_pretraining_variance_a_flat_one_would_not():
    # Every run's seeds agree exactly, but the two pretraining runs differ: resampling only within
    # runs would give a zero-width interval; resampling the runs first does not.
    tasks = [[np.full(5, 0.2), np.full(5, 0.8)]]
    iv = stats.iqm_interval(tasks, reps=400, seed=0)
    assert iv.low < iv.mean < iv.high and iv.high - iv.low > 0.3
    with pytest.raises(ValueError) as info:
        stats.iqm_interval([[np.ones(2)], [np.ones(2), np.ones(2)]])
    assert str(info.value) == "every task needs the same, non-zero number of pretraining runs"


def test_probability_of_improvement_against_hand_computation_and_mann_whitney():
    x = [[1, 2, 3], [2, 3]]
    y = [[0, 1, 2], [3, 4]]
    # task 1: (1.5 + 2.5 + 3) / 9 = 7/9; task 2: 0.5 / 4 = 1/8
    assert stats.probability_of_improvement(x, y) == pytest.approx((7 / 9 + 1 / 8) / 2)
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=5), rng.normal(size=6)
    u = sps.mannwhitneyu(a, b).statistic
    assert stats.probability_of_improvement([a], [b]) == pytest.approx(u / 30)
    with pytest.raises(ValueError) as info:
        stats.probability_of_improvement([a], [])
    assert str(info.value) == "probability of improvement needs the same, non-empty list of tasks for both"


def test_probability_of_improvement_interval():
    better = stats.probability_of_improvement_interval([[np.array([0.9, 0.8, 0.85])]],
                                                       [[np.array([0.1, 0.2, 0.3])]], reps=300)
    assert (better.mean, better.low, better.high) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(5)
    x = [[rng.normal(size=5) for _ in range(2)] for _ in range(3)]
    y = [[rng.normal(size=5) for _ in range(2)] for _ in range(3)]
    a = stats.probability_of_improvement_interval(x, y, reps=400, seed=3)
    assert a == stats.probability_of_improvement_interval(x, y, reps=400, seed=3)
    assert 0 <= a.low <= a.mean <= a.high <= 1 and a.high - a.low > 0.1
    # Unequal seeds per pretraining run take the general (per-replicate) path.
    ragged_y = [[t[0], t[1][:4]] for t in y]
    b = stats.probability_of_improvement_interval(x, ragged_y, reps=50, seed=3)
    assert 0 <= b.low <= b.mean <= b.high <= 1


def test_missing_values_are_left_out_whether_nan_or_none():
    assert stats.mean_ci([0.5, None, 0.7, math.nan, 0.9]) == stats.mean_ci([0.5, 0.7, 0.9])
    empty = stats.mean_ci([None])
    assert empty.n == 0 and all(math.isnan(v) for v in (empty.mean, empty.low, empty.high))
    # a pair with a missing side is dropped, the others stay paired
    assert stats.paired_comparison([0.5, None, 0.7, 0.9], [0.4, 0.5, 0.5, math.nan]) == \
        stats.paired_comparison([0.5, 0.7], [0.4, 0.5])
    assert stats.paired_comparison([0.5, 0.7, 0.9], [0.4, None, 0.5]) == stats.paired_comparison([0.5, 0.9], [0.4, 0.5])


def test_paired_comparison_of_one_pair_has_a_difference_but_no_interval_or_test():
    one = stats.paired_comparison([0.7], [0.5])
    assert one.diff.mean == pytest.approx(0.2) and one.diff.n == 1
    assert math.isnan(one.diff.low) and math.isnan(one.diff.high) and math.isnan(one.p)
    assert one.constant is False


def test_paired_comparison_passes_its_confidence_to_the_interval():
    a, b = [0.71, 0.64, 0.69, 0.75], [0.60, 0.62, 0.58, 0.66]
    for confidence in (0.8, 0.99):
        got = stats.paired_comparison(a, b, confidence=confidence).diff
        assert got == stats.mean_ci(np.subtract(a, b), confidence)
    assert stats.paired_comparison(a, b, 0.8).diff.high < stats.paired_comparison(a, b, 0.99).diff.high


def test_paired_samples_of_different_lengths_are_refused_with_both_shapes():
    with pytest.raises(ValueError, match=r"one value per replicate each, got \(3,\) and \(2,\)"):
        stats.paired_comparison([0.1, 0.2, 0.3], [0.1, 0.2])


def test_constant_differences_are_no_variation_not_a_p_value():
    # 0.6-0.5, 0.7-0.6, 0.8-0.7 differ only by rounding (~1e-16): the same difference every time
    c = stats.paired_comparison([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])
    assert c.constant is True and math.isnan(c.p)
    assert c.diff.n == 3 and c.diff.mean == pytest.approx(0.1)
    assert c.diff.low == c.diff.mean == c.diff.high


@pytest.mark.parametrize("d,constant", [
    ([0.0, 1e-12], True),            # spread exactly at the threshold 1e-12 · max(1, |d|): constant
    ([0.0, 1.5e-12], False),         # just above it, with |d| < 1 the threshold stays 1e-12
    ([1e6, 1e6 + 1e-7], True),       # the threshold scales with |d|: 1e-12 · 1e6 = 1e-6
    ([1e6, 1e6 + 1e-5], False),
])
def test_the_no_variation_threshold_is_relative_to_the_differences_size(d, constant):
    c = stats.paired_comparison(d, [0.0] * len(d))
    assert c.constant is constant and math.isnan(c.p) is constant


def test_balanced_improvement_interval_equals_the_per_replicate_computation_with_ties():
    # scores on a coarse grid so that x == y ties are frequent; two tasks, so averaging over tasks
    # (not over replicates) is what is checked
    rng = np.random.default_rng(5)
    x = [[rng.integers(5, 9, 4) / 10 for _ in range(3)] for _ in range(2)]
    y = [[rng.integers(4, 8, 4) / 10 for _ in range(3)] for _ in range(2)]
    got = stats.probability_of_improvement_interval(x, y, reps=300, seed=2, confidence=0.9)
    r = np.random.default_rng(2)
    bx, by = stats.hierarchical_resample(x, r, 300), stats.hierarchical_resample(y, r, 300)
    boot = np.mean([[stats._improvement(tx[k], ty[k]) for k in range(300)] for tx, ty in zip(bx, by, strict=True)], axis=0)
    low, high = np.percentile(boot, [5, 95])
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)
    assert got.mean == pytest.approx(stats.probability_of_improvement(
        [np.concatenate(t) for t in x], [np.concatenate(t) for t in y]))
    assert got.n == 2 * 3 * 4  # every run of X


def test_cluster_means_are_per_label_in_sorted_label_order_and_labels_must_pair_with_values():
    got = stats.cluster_means([0.1, 0.9, 0.3, 0.5, 0.7], [2, 0, 2, 1, 0])
    assert got.tolist() == pytest.approx([0.8, 0.5, 0.2])  # clusters 0, 1, 2
    assert stats.cluster_means([1, 2], ["b", "a"]).dtype == float
    with pytest.raises(ValueError) as info:
        stats.cluster_means([0.1, 0.2, 0.3], [0, 1])
    assert str(info.value) == "one cluster label per value needed, got (3,) and (2,)"


def test_an_interval_clipped_to_a_metrics_range_keeps_its_mean_and_n():
    iv = stats.Interval(0.95, 0.85, 1.05, 3)
    assert iv.clipped() == stats.Interval(0.95, 0.85, 1.0, 3)
    assert stats.Interval(0.02, -0.1, 0.14, 4).clipped() == stats.Interval(0.02, 0.0, 0.14, 4)
    assert stats.Interval(0.5, 0.4, 0.6, 5).clipped() == stats.Interval(0.5, 0.4, 0.6, 5)
    assert stats.Interval(0.0, -0.3, 0.3, 2).clipped(-0.2, 0.2) == stats.Interval(0.0, -0.2, 0.2, 2)
    lone = stats.Interval(0.5, math.nan, math.nan, 1)
    assert lone.clipped() is lone  # no interval to clip
