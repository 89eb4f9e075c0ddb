"""The variance-vs-size ablation's statistics: macro-F1 along the diversity and size axes, and a test of
the claim (its section is rendered by `render.ablation_section`, its figure drawn by `figures`).

The claim (Benjamin et al., ASMUS 2023): for SSL pretraining on ultrasound video, the variance of
the video set (distinct subjects) matters more than its size (frames). Per track × method × eval
protocol, an ordinary least-squares fit over the pretraining subsets,

    macro-F1 = b0 + b_div · log2(subjects) + b_size · log2(frames),

estimates the gain per doubling of subjects at a fixed frame budget (b_div) and per doubling of
frames at fixed subjects (b_size), with t-intervals, and the difference b_div − b_size. The fit's
points are the pretraining runs (each subset is pretrained once per pretraining seed; a point is the
mean over that run's downstream seeds): downstream seeds vary the label subset and the head, not the
pretraining, so counting them as points would overstate precision. The residual variance is floored
at the variance a point's mean has from its downstream seeds alone, so a fit through few points that
happen to line up cannot claim more precision than its points carry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from leaderboard import analysis, stats
from leaderboard.results import VARIANCE_VS_SIZE


def expand(runs: pd.DataFrame) -> pd.DataFrame:
    """The ablation runs of `runs` with their subset fields as columns."""
    runs = runs[runs["protocol"] == VARIANCE_VS_SIZE]
    if runs.empty:
        return pd.DataFrame(columns=[*runs.columns, "axis", "level", "subjects", "frames", "videos",
                                     "eval_protocol"])
    fields = pd.DataFrame(list(runs["ablation"]), index=runs.index)
    out = runs.assign(axis=fields["axis"], level=fields["level"].astype(int), subjects=fields["subjects"].astype(int),
                      frames=fields["frames"].astype(int), videos=fields.get("videos", 0),
                      eval_protocol=fields["eval_protocol"])
    return out.sort_values(["track", "init", "eval_protocol", "axis", "level", "pretrain_seed", "seed"], kind="stable")


@dataclass(frozen=True)
class Slopes:
    """OLS of macro-F1 on log2(subjects) and log2(frames) over subset means."""

    diversity: stats.Interval  # per doubling of subjects
    size: stats.Interval  # per doubling of frames
    difference: stats.Interval  # diversity − size
    p_diversity: float
    p_size: float
    p_difference: float
    n_points: int


def fit_slopes(points: pd.DataFrame, confidence: float = stats.CONFIDENCE) -> Slopes | None:
    """`points`: one row per pretraining run with columns subjects, frames, macro_f1 (the mean over
    its downstream seeds) and optionally noise_var (the variance of that mean from the seeds alone,
    the floor of the residual variance). None when the design cannot separate the two slopes (fewer
    than 4 distinct subsets, or collinear)."""
    pts = points
    n = len(pts)
    x = np.column_stack([np.ones(n), np.log2(pts["subjects"].to_numpy(float)), np.log2(pts["frames"].to_numpy(float))])
    y = pts["macro_f1"].to_numpy(float)
    dof = n - 3
    if len(pts.drop_duplicates(["subjects", "frames"])) < 4 or dof < 1 or np.linalg.matrix_rank(x) < 3:
        return None
    xtx_inv = np.linalg.inv(x.T @ x)
    beta = xtx_inv @ x.T @ y
    resid = y - x @ beta
    floor = float(np.nanmean(pts["noise_var"])) if "noise_var" in pts and pts["noise_var"].notna().any() else 0.0
    sigma2 = max(float(resid @ resid) / dof, floor)
    cov = sigma2 * xtx_inv
    tcrit = float(sps.t.ppf(0.5 + confidence / 2, dof))

    def interval(c: np.ndarray) -> tuple[stats.Interval, float]:
        est = float(c @ beta)
        se = math.sqrt(max(float(c @ cov @ c), 0.0))
        p = float(2 * sps.t.sf(abs(est) / se, dof)) if se > 0 else (0.0 if est != 0 else 1.0)
        return stats.Interval(est, est - tcrit * se, est + tcrit * se, n), p

    (div, p_div), (size, p_size), (diff, p_diff) = (interval(np.array(c, float))
                                                    for c in ([0, 1, 0], [0, 0, 1], [0, 1, -1]))
    return Slopes(div, size, diff, p_div, p_size, p_diff, n)


def verdict(s: Slopes | None, n_fits: int = 1) -> str:
    """One sentence that the fit supports, and no more. With `n_fits` fits on one page the intervals
    passed in should be Bonferroni-widened (`fit_slopes(confidence=...)`), and the p-value shown is
    Bonferroni-adjusted here."""
    if s is None:
        return "Too few distinct subsets to separate diversity from size (the fit needs at least 4)."

    def effect(iv: stats.Interval, what: str) -> str:
        span = f"{100 * iv.mean:+.1f} F1 points per doubling of {what}, CI [{100 * iv.low:+.1f}, {100 * iv.high:+.1f}]"
        if iv.low > 0:
            return f"helps ({span})"
        if iv.high < 0:
            return f"hurts ({span})"
        return f"shows no detectable effect ({span})"

    d = s.difference
    if d.low > 0:
        compare = "diversity helps more than size"
    elif d.high < 0:
        compare = "size helps more than diversity"
    else:
        compare = "the data do not separate diversity from size"
    return (f"Diversity {effect(s.diversity, 'subjects at a fixed frame budget')}; size "
            f"{effect(s.size, 'frames at fixed subjects')}; {compare} (difference of slopes "
            f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}], "
            f"p={min(1.0, s.p_difference * n_fits):.3f}{' Bonferroni-adjusted' if n_fits > 1 else ''}, "
            f"{s.n_points} pretraining runs).")


def subset_means(group: pd.DataFrame) -> pd.DataFrame:
    """One row per subset: mean and interval over its pretraining runs (over its downstream seeds when
    it was pretrained once: `conditional`)."""
    rows = []
    for (axis, level), g in group.groupby(["axis", "level"], sort=True):
        cell = analysis.nested_interval(g, "macro_f1")
        rows.append({"axis": axis, "level": level, "subjects": int(g["subjects"].iloc[0]),
                     "videos": int(g["videos"].iloc[0]), "frames": int(g["frames"].iloc[0]),
                     "macro_f1": cell.interval.mean, "interval": cell.interval, "cell": cell})
    return pd.DataFrame(rows)


def run_points(group: pd.DataFrame) -> pd.DataFrame:
    """The fit's points: one per pretraining run of a subset, its mean over the downstream seeds and
    the variance of that mean from the seeds (s² / n)."""
    rows = []
    # By subset content, not axis level: a subset on both axes (e.g. the fewest subjects at the largest
    # frame budget) is one pretraining run, one point.
    for (subjects, frames, _seed), g in group.groupby(["subjects", "frames", "pretrain_seed"], sort=True):
        g = g.drop_duplicates("seed")
        v = g["macro_f1"].to_numpy(float)
        rows.append({"subjects": int(subjects), "frames": int(frames), "macro_f1": float(v.mean()),
                     "noise_var": float(v.var(ddof=1) / len(v)) if len(v) > 1 else np.nan})
    return pd.DataFrame(rows)
