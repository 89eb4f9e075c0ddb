"""The leaderboard's statistics: small pure functions over arrays of scores.

Seeds are the runs of one cell (init × protocol × label fraction); tasks (protocol × fraction)
are the blocks of the across-task comparison. Everything here is numpy/scipy only.
IQM, the stratified bootstrap and the probability of improvement follow rliable (Agarwal et al.,
"Deep Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021); the Friedman
test and Nemenyi critical difference follow Demšar (JMLR 2006).
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
# Smallest n at which an exact two-sided Wilcoxon signed-rank p can fall below 0.05 (2/2^n < 0.05):
# below it the test can never reject, so the paired t-test is used instead.
WILCOXON_MIN_N = 6
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval (nan bounds when n is too small)."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class PairedComparison:
    """Paired difference a − b over matched seeds, with the test that gave `p`."""

    diff: Interval
    p: float
    test: str  # "t-test" | "wilcoxon" | "none"


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


def paired_test_name(n: int) -> str:
    """The paired test used for n matched pairs."""
    if n < 2:
        return "none"
    return "wilcoxon" if n >= WILCOXON_MIN_N else "t-test"


def paired_comparison(a, b, confidence: float = CONFIDENCE) -> PairedComparison:
    """Mean paired difference a − b with its t-CI and a two-sided paired test.

    Paired t-test for 2 <= n < WILCOXON_MIN_N, Wilcoxon signed-rank for n >= WILCOXON_MIN_N
    (scipy's exact null distribution where there are no ties or zeros, its normal approximation
    otherwise). All-zero differences give p = 1 (no evidence of a difference).
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have one value per seed each, got {a.shape} and {b.shape}")
    d = a - b
    d = d[~np.isnan(d)]
    diff = mean_ci(d, confidence)
    test = paired_test_name(diff.n)
    if test == "none":
        return PairedComparison(diff, math.nan, test)
    if np.all(d == 0):
        return PairedComparison(diff, 1.0, test)
    with warnings.catch_warnings():
        # Near-identical differences make scipy warn about precision; the p-value is still right.
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "wilcoxon":
            p = float(stats.wilcoxon(d).pvalue)
        else:
            p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return PairedComparison(diff, p, test)


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


@dataclass(frozen=True)
class Friedman:
    statistic: float
    p: float
    k: int
    n_blocks: int


def friedman(scores: pd.DataFrame) -> Friedman:
    """Friedman test over blocks (rows) × treatments (columns); needs >= 3 treatments and >= 2 blocks."""
    n, k = scores.shape
    if k < 3 or n < 2:
        raise ValueError(f"the Friedman test needs >= 3 inits and >= 2 tasks, got {k} and {n}")
    if (scores.nunique(axis=1) == 1).all():
        # Every task ties all inits: scipy's tie correction divides by zero; there is no evidence at all.
        return Friedman(0.0, 1.0, k, n)
    res = stats.friedmanchisquare(*[scores[c].to_numpy() for c in scores.columns])
    return Friedman(float(res.statistic), float(res.pvalue), k, n)


def nemenyi_cd(k: int, n_blocks: int, alpha: float = ALPHA) -> float:
    """Nemenyi critical difference of average ranks (Demšar 2006): q_α/√2 · √(k(k+1)/(6N))."""
    q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6.0 * n_blocks))


def min_blocks_for_nemenyi(k: int, alpha: float = ALPHA) -> int:
    """Fewest blocks for which the CD is below k − 1, the largest possible gap in average rank.

    With fewer, no two inits can ever be told apart, so the diagram would carry no information.
    """
    n = 2
    while nemenyi_cd(k, n, alpha) >= k - 1:
        n += 1
    return n


def iqm(scores) -> float:
    """Interquartile mean over all runs and tasks (rliable's `aggregate_iqm`: 25 % trimmed mean)."""
    x = np.asarray(scores, dtype=float).ravel()
    return float(stats.trim_mean(x, proportiontocut=0.25))


def probability_of_improvement(x_by_task: list, y_by_task: list) -> float:
    """P(X > Y) as rliable defines it: the mean over tasks of the Mann–Whitney probability
    P(x > y) + ½ P(x = y) between the runs of X and the runs of Y on that task.

    rliable (Agarwal et al. 2021, `metrics.probability_of_improvement`) takes a runs × tasks array
    per algorithm; here each task may have its own number of runs.
    """
    if len(x_by_task) != len(y_by_task) or not x_by_task:
        raise ValueError("probability of improvement needs the same, non-empty list of tasks for both")
    per_task = [float(_pairwise_improvement(np.asarray(x, dtype=float), np.asarray(y, dtype=float)))
                for x, y in zip(x_by_task, y_by_task, strict=True)]
    return float(np.mean(per_task))


def _stratified_resample(tasks: list[np.ndarray], rng: np.random.Generator, reps: int) -> list[np.ndarray]:
    # rliable's StratifiedBootstrap: runs are resampled with replacement within each task (stratum);
    # one (reps × runs) array per task.
    return [t[rng.integers(0, t.size, (reps, t.size))] for t in tasks]


def _percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _pairwise_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(x > y) + ½ P(x = y) over the last axis of x against the last axis of y."""
    x = x[..., :, None]
    y = y[..., None, :]
    return ((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1))


def iqm_interval(scores_by_task: list, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED,
                 confidence: float = CONFIDENCE) -> Interval:
    """IQM over all runs of all tasks with a stratified-bootstrap percentile CI
    (rliable's `get_interval_estimates` with `StratifiedBootstrap`, method "percentile")."""
    tasks = [np.asarray(t, dtype=float) for t in scores_by_task]
    point = iqm(np.concatenate(tasks))
    rng = np.random.default_rng(seed)
    boot = stats.trim_mean(np.concatenate(_stratified_resample(tasks, rng, reps), axis=1), 0.25, axis=1)
    low, high = _percentile_interval(boot, confidence)
    return Interval(point, low, high, sum(t.size for t in tasks))


def probability_of_improvement_interval(x_by_task: list, y_by_task: list, reps: int = BOOTSTRAP_REPS,
                                        seed: int = BOOTSTRAP_SEED,
                                        confidence: float = CONFIDENCE) -> Interval:
    """P(X > Y) with a percentile CI from resampling X's and Y's runs independently within each task
    (rliable's `StratifiedIndependentBootstrap`)."""
    xs = [np.asarray(t, dtype=float) for t in x_by_task]
    ys = [np.asarray(t, dtype=float) for t in y_by_task]
    point = probability_of_improvement(xs, ys)
    rng = np.random.default_rng(seed)
    bx = _stratified_resample(xs, rng, reps)
    by = _stratified_resample(ys, rng, reps)
    boot = np.mean([_pairwise_improvement(x, y) for x, y in zip(bx, by, strict=True)], axis=0)
    low, high = _percentile_interval(boot, confidence)
    return Interval(point, low, high, sum(t.size for t in xs))
