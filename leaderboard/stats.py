"""The leaderboard's statistics: small pure functions over arrays of scores.

Runs are nested: every pretraining run (a pretraining seed; for a baseline without pretraining, a
block of label subsets paired with the SSL runs of that seed) is evaluated on several downstream
seeds. The pretraining runs are the independent replicates, so intervals and tests are computed
over their means (`cluster_means`), not over all runs, which would pretend the downstream seeds of
one checkpoint were independent draws of the method. Everything here is numpy/scipy only.
IQM, the bootstrap and the probability of improvement follow rliable (Agarwal et al., "Deep
Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021), with the bootstrap
made hierarchical: pretraining runs are resampled first, then the downstream runs within each.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval (nan bounds when n is too small)."""

    mean: float
    low: float
    high: float
    n: int

    def clipped(self, low: float = 0.0, high: float = 1.0) -> Interval:
        """The interval intersected with a bounded metric's range (a t-interval can leave it; the true
        value cannot, so the intersection covers it whenever the interval does)."""
        if math.isnan(self.low):
            return self
        return Interval(self.mean, max(self.low, low), min(self.high, high), self.n)


@dataclass(frozen=True)
class PairedComparison:
    """Paired difference a − b over matched replicates, with the paired t-test's two-sided p.

    `p` is nan when there is no test: fewer than 2 pairs, or differences that do not vary
    (`constant`), where a t statistic is undefined and a p-value would only reflect rounding.
    """

    diff: Interval
    p: float
    constant: bool = False


def mean_ci(values, confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t confidence interval of the mean (sample standard deviation, n − 1 dof)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


def cluster_means(values, clusters) -> np.ndarray:
    """The mean of `values` within each cluster (e.g. the downstream runs of one pretraining run),
    in the order of the sorted cluster labels."""
    values = np.asarray(values, dtype=float)
    clusters = np.asarray(clusters)
    if values.shape != clusters.shape:
        raise ValueError(f"one cluster label per value needed, got {values.shape} and {clusters.shape}")
    return np.array([values[clusters == c].mean() for c in np.unique(clusters)])


def paired_comparison(a, b, confidence: float = CONFIDENCE) -> PairedComparison:
    """Mean paired difference a − b with its t-interval and the two-sided paired t-test.

    One test at every n (scipy's `ttest_1samp` on the differences): it can reach p < 0.05 from
    n = 2 on, where a rank test cannot below n = 6 (and Holm would then erase every mark).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have one value per replicate each, got {a.shape} and {b.shape}")
    d = a - b
    d = d[~np.isnan(d)]
    diff = mean_ci(d, confidence)
    if diff.n < 2:
        return PairedComparison(diff, math.nan)
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):
        return PairedComparison(Interval(diff.mean, diff.mean, diff.mean, diff.n), math.nan, constant=True)
    with warnings.catch_warnings():
        # Near-identical differences make scipy warn about precision; the p-value is still right.
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return PairedComparison(diff, p)


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error), nan entries left out and kept nan.

    Hand-written because scipy has no Holm and the missing cells (nan) must stay outside the family.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def average_ranks(scores: pd.DataFrame) -> pd.Series:
    """Average rank of each column (init) over rows (tasks); rank 1 = highest score, ties averaged."""
    ranks = scores.apply(lambda row: pd.Series(stats.rankdata(-row.to_numpy()), index=row.index), axis=1)
    return ranks.mean(axis=0)


def iqm(scores) -> float:
    """Interquartile mean over all runs and tasks (rliable's `aggregate_iqm`: 25 % trimmed mean)."""
    x = np.asarray(scores, dtype=float).ravel()
    return float(stats.trim_mean(x, proportiontocut=0.25))


# An init's runs for the aggregate statistics: per task, one array of downstream runs per pretraining
# run, the pretraining runs in the same order in every task.
Nested = list[list[np.ndarray]]


def hierarchical_resample(tasks: Nested, rng: np.random.Generator, reps: int) -> list[list[np.ndarray]]:
    """Bootstrap samples of nested runs: per replicate, the pretraining runs are drawn with replacement
    (one draw for all tasks: a pretraining run is one checkpoint in every task), then the downstream
    runs within each drawn pretraining run (rliable's stratified bootstrap made two-level, as a
    pretraining run's downstream seeds are not independent draws of the method).

    Returns, per task, the resampled runs of each replicate: a reps × runs array when every pretraining
    run of the task has as many downstream runs, else a list of `reps` arrays."""
    n_clusters = {len(t) for t in tasks}
    if len(n_clusters) != 1 or 0 in n_clusters:
        raise ValueError("every task needs the same, non-zero number of pretraining runs")
    c = n_clusters.pop()
    pick = rng.integers(0, c, (reps, c))
    out = []
    for clusters in tasks:
        inner = [np.asarray(x, dtype=float)[rng.integers(0, len(x), (reps, len(x)))] for x in clusters]
        if len({len(x) for x in clusters}) == 1:  # balanced: one gather for all replicates
            chosen = np.stack(inner)[pick, np.arange(reps)[:, None]]  # reps × c × runs
            out.append(chosen.reshape(reps, -1))
        else:
            out.append([np.concatenate([inner[j][r] for j in pick[r]]) for r in range(reps)])
    return out


def _percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(x > y) + ½ P(x = y) between every run of x and every run of y (Mann–Whitney's U / (n·m))."""
    x = np.asarray(x, dtype=float)[:, None]
    y = np.asarray(y, dtype=float)[None, :]
    return float(((x > y) + 0.5 * (x == y)).mean())


def probability_of_improvement(x_by_task: list, y_by_task: list) -> float:
    """P(X > Y) as rliable defines it: the mean over tasks of the Mann–Whitney probability
    P(x > y) + ½ P(x = y) between the runs of X and the runs of Y on that task."""
    if len(x_by_task) != len(y_by_task) or not x_by_task:
        raise ValueError("probability of improvement needs the same, non-empty list of tasks for both")
    return float(np.mean([_improvement(x, y) for x, y in zip(x_by_task, y_by_task, strict=True)]))


def _flat(tasks: Nested) -> list[np.ndarray]:
    return [np.concatenate([np.asarray(c, dtype=float) for c in t]) for t in tasks]


def iqm_interval(tasks: Nested, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED,
                 confidence: float = CONFIDENCE) -> Interval:
    """IQM over all runs of all tasks with a percentile interval from the hierarchical bootstrap
    (rliable's `get_interval_estimates`, method "percentile"). `n` counts the runs."""
    flat = _flat(tasks)
    point = iqm(np.concatenate(flat))
    boot_tasks = hierarchical_resample(tasks, np.random.default_rng(seed), reps)
    if all(isinstance(t, np.ndarray) for t in boot_tasks):
        boot = stats.trim_mean(np.concatenate(boot_tasks, axis=1), 0.25, axis=1)
    else:
        boot = np.array([iqm(np.concatenate([t[r] for t in boot_tasks])) for r in range(reps)])
    low, high = _percentile_interval(boot, confidence)
    return Interval(point, low, high, sum(x.size for x in flat))


def probability_of_improvement_interval(x_tasks: Nested, y_tasks: Nested, reps: int = BOOTSTRAP_REPS,
                                        seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> Interval:
    """P(X > Y) with a percentile interval from resampling X's and Y's nested runs independently
    (rliable's `StratifiedIndependentBootstrap`, made hierarchical)."""
    point = probability_of_improvement(_flat(x_tasks), _flat(y_tasks))
    rng = np.random.default_rng(seed)
    bx = hierarchical_resample(x_tasks, rng, reps)
    by = hierarchical_resample(y_tasks, rng, reps)
    per_task = []
    for x, y in zip(bx, by, strict=True):
        if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):  # balanced: all replicates at once
            per_task.append(((x[:, :, None] > y[:, None, :]) + 0.5 * (x[:, :, None] == y[:, None, :])).mean((1, 2)))
        else:
            per_task.append(np.array([_improvement(x[r], y[r]) for r in range(reps)]))
    boot = np.mean(per_task, axis=0)
    low, high = _percentile_interval(boot, confidence)
    return Interval(point, low, high, sum(x.size for x in _flat(x_tasks)))
