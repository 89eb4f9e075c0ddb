"""The variance-vs-size section: macro-F1 along the diversity and size axes, and a test of the claim.

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
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from leaderboard import stats

NAME = "variance_vs_size"
AXES = ("diversity", "size")


def figure_name(track: str) -> str:
    return f"variance_vs_size_{track}.png"


def expand(runs: pd.DataFrame) -> pd.DataFrame:
    """The ablation runs of `runs` with their subset fields as columns."""
    runs = runs[runs["protocol"] == NAME]
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
    from leaderboard.analysis import nested_interval

    rows = []
    for (axis, level), g in group.groupby(["axis", "level"], sort=True):
        cell = nested_interval(g, "macro_f1")
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


def section(page) -> list[str]:
    """Markdown lines of the ablation section (empty when there are no ablation runs)."""
    from leaderboard.render import FIGURES_DIR, interval_text, markdown_table, runs_text

    runs = expand(page.results.ablation)
    if runs.empty:
        return []
    lines = ["## Ablation: variance vs size of the pretraining videos", "",
             "Does a diverse pretraining set (more distinct subjects) beat a merely larger one (more frames)? "
             "Subsets of the pretraining pool along two axes (`protocols/variance_vs_size.toml`), each "
             "pretrained for the same number of steps once per pretraining seed, evaluated at the protocol's "
             "label fraction; test macro-F1, mean [95 % interval over the pretraining runs] (runs × seeds; † = "
             "one pretraining run, the interval then covers its downstream seeds only). The slopes come from a "
             "least-squares fit of macro-F1 on log2(subjects) and log2(frames) with one point per pretraining "
             "run (its mean over the downstream seeds, which vary the labels and the head, not the "
             "pretraining); the residual variance is floored at the variance the points have from their "
             "downstream seeds alone; with several fits in a track (methods × protocols) their intervals and "
             "p-values are Bonferroni-adjusted for that number.", ""]
    for track in sorted(runs["track"].unique()):
        tr = runs[runs["track"] == track]
        lines += [f"### `{track}`", "", f"![variance vs size]({FIGURES_DIR}/{figure_name(track)})", ""]
        groups = list(tr.groupby(["init", "eval_protocol"], sort=True))
        n_fits = len(groups)
        level = 1 - (1 - stats.CONFIDENCE) / n_fits  # Bonferroni across the fits of this track
        for (init, ev), g in groups:
            hashes = sorted(g["protocol_hash"].unique())
            means = subset_means(g)
            fraction = g["fraction"].iloc[0]
            lines += [f"#### {init}, {ev} at {100 * fraction:g} % labels "
                      f"(protocol `{hashes[0][:12]}`{' + older versions' if len(hashes) > 1 else ''})", ""]
            rows = [[m.axis, str(m.level), str(m.subjects), str(m.videos), str(m.frames),
                     f"{interval_text(m.interval)}{'†' if m.cell.conditional else ''} ({runs_text(m.cell)})"
                     if m.interval.n >= 2 else f"{100 * m.interval.mean:.1f} ({runs_text(m.cell)}, no interval)"]
                    for m in means.itertuples()]
            lines += markdown_table(rows, ["axis", "level", "subjects", "videos", "frames", "macro-F1"],
                                    ["left", "right", "right", "right", "right", "left"]) + [""]
            lines += [verdict(fit_slopes(run_points(g), confidence=level), n_fits), ""]
    return lines


def write_figures(results, figures_dir: Path) -> list[Path]:
    """One two-panel figure per track: macro-F1 vs subjects (diversity) and vs frames (size)."""
    from matplotlib.figure import Figure

    from leaderboard.figures import DPI, PNG_METADATA

    runs = expand(results.ablation)
    written = []
    for track in sorted(runs["track"].unique()):
        tr = runs[runs["track"] == track]
        fig = Figure(figsize=(10.0, 4.0))
        axes = fig.subplots(1, 2, sharey=True)
        for ax, axis, xcol, title in ((axes[0], "diversity", "subjects", "diversity: subjects at a fixed frame budget"),
                                      (axes[1], "size", "frames", "size: frames at fixed subjects")):
            series = list(tr[tr["axis"] == axis].groupby(["init", "eval_protocol"], sort=True))
            for i, ((init, ev), g) in enumerate(series):
                m = subset_means(g)
                dodge = 2 ** (0.06 * (i - (len(series) - 1) / 2))  # side by side, so the error bars do not hide each other
                ivs = list(m["interval"])
                yerr = np.array([[100 * (iv.mean - iv.low) if iv.n > 1 else 0 for iv in ivs],
                                 [100 * (iv.high - iv.mean) if iv.n > 1 else 0 for iv in ivs]])
                ax.errorbar(m[xcol] * dodge, 100 * m["macro_f1"], yerr=yerr, marker="o", capsize=3,
                            linestyle="-" if ev == "finetune" else "--", label=f"{init}, {ev}")
            ax.set_xscale("log", base=2)
            ticks = sorted(tr.loc[tr["axis"] == axis, xcol].unique())
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel(xcol)
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("test macro-F1 (%)")
        handles = {}
        for ax in axes:  # an axis may have no runs (e.g. only the diversity levels were run)
            handles.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
        if handles:
            fig.legend(list(handles.values()), list(handles), fontsize=8, loc="lower center",
                       ncol=min(4, len(handles)), bbox_to_anchor=(0.5, -0.08))
        fig.suptitle(f"variance vs size — {track}", fontsize=10)
        figures_dir.mkdir(parents=True, exist_ok=True)
        path = figures_dir / figure_name(track)
        fig.savefig(path, dpi=DPI, metadata=PNG_METADATA, bbox_inches="tight")
        written.append(path)
    return written
