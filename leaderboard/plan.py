"""How many pretraining runs a track would need for its paired Δs vs a reference to reach a given
precision, and what that would cost, from the track's own results (`sslbench leaderboard --plan`).

The page's Δ (leaderboard.analysis.paired_delta) is the t-interval over the pretraining runs' mean
paired differences. Its width has two sources, estimated per cell from the matched jobs by the
one-way random-effects decomposition: how much a run's mean difference varies from run to run beyond
what its downstream seeds explain (`between`), and how much one job's difference varies among the
seeds of one run (`within`). With R runs of S seeds the half-width is
t(0.975, R − 1) · √((between + within / S) / R): more seeds narrow only the second term, more runs
both. The cost side takes each init's median pretraining time per run and median evaluation time per
pretraining seed (the sum of its jobs' own wall times) from the result files, so a projection is in the
units of the machine that made them. `plan_slopes` does the same for the variance-vs-size ablation's
difference of slopes (`sslbench leaderboard --plan-slopes`). Never imports torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from leaderboard import stats
from leaderboard.analysis import REFERENCE_INIT, Table, cell_runs, compared_inits, paired_differences

MAX_RUNS = 1000  # beyond this a target is reported as out of reach


@dataclass(frozen=True)
class CellPlan:
    """One Δ cell (init vs the reference, protocol, label fraction) and the runs it would need."""

    protocol: str
    init: str
    fraction: float
    runs: int  # pretraining runs matched with the reference
    seeds: float  # downstream seeds per run (mean)
    between: float  # variance of a run's mean difference not explained by its seeds
    within: float  # variance of one job's difference among the seeds of a run (0 with one job per run)
    half_width: float  # now: the page's interval (t over the runs' mean differences)
    runs_needed: int | None  # for the target at `seeds` per run; None: more than MAX_RUNS


def variance_components(d: np.ndarray, clusters: np.ndarray) -> tuple[float, float, float]:
    """(between, within, seeds per run) of differences `d` nested in pretraining runs `clusters`.

    `within` is the mean of the runs' sample variances (0 when no run has two jobs); `between` the
    variance of the run means less `within / seeds`, clipped at 0 (the usual moment estimate, which can
    come out negative when the runs agree better than their seeds would suggest)."""
    groups = [d[clusters == c] for c in np.unique(clusters)]
    if len(groups) < 2:
        raise ValueError("variance components need at least 2 pretraining runs")
    seeds = float(np.mean([len(g) for g in groups]))
    multi = [g for g in groups if len(g) >= 2]
    within = float(np.mean([g.var(ddof=1) for g in multi])) if multi else 0.0
    means = np.array([g.mean() for g in groups])
    between = max(0.0, float(means.var(ddof=1)) - within / seeds)
    return between, within, seeds


def projected_half_width(runs: int, seeds: float, between: float, within: float,
                         confidence: float = stats.CONFIDENCE) -> float:
    """Half-width of the t-interval over `runs` run means, each over `seeds` jobs."""
    if runs < 2:
        return math.inf
    return float(sps.t.ppf(0.5 + confidence / 2, runs - 1) * math.sqrt((between + within / seeds) / runs))


def runs_needed(target: float, seeds: float, between: float, within: float,
                confidence: float = stats.CONFIDENCE) -> int | None:
    """The fewest pretraining runs (≥ 2) whose projected half-width is ≤ `target`; None past MAX_RUNS."""
    for runs in range(2, MAX_RUNS + 1):
        if projected_half_width(runs, seeds, between, within, confidence) <= target:
            return runs
    return None


def plan_cells(track_tables: list[Table], target: float, metric: str = "macro_f1",
               fractions: list[float] | None = None, reference: str = REFERENCE_INIT,
               protocols: list[str] | None = None) -> list[CellPlan]:
    """Every Δ vs `reference` of a track's current tables (at `fractions` and of `protocols`, default all)
    that has ≥ 2 pretraining runs, with the runs it would need for a half-width of `target` (in the
    metric's units)."""
    out = []
    for table in track_tables:
        if not table.current or reference not in set(table.runs["init"]):
            continue
        if protocols is not None and table.key.protocol not in protocols:
            continue
        for fraction in table.fractions:
            if fractions is not None and not any(math.isclose(fraction, f) for f in fractions):
                continue
            ref = cell_runs(table.runs, reference, fraction)
            for init in compared_inits(table, reference):
                paired = paired_differences(cell_runs(table.runs, init, fraction), ref, metric)  # as the page pairs
                if paired is None or len(np.unique(paired[1])) < 2:
                    continue
                d, clusters = paired
                between, within, seeds = variance_components(d, clusters)
                now = stats.mean_ci(stats.cluster_means(d, clusters))
                out.append(CellPlan(table.key.protocol, init, float(fraction), len(np.unique(clusters)), seeds,
                                    between, within, (now.high - now.low) / 2,
                                    runs_needed(target, seeds, between, within)))
    return out


@dataclass(frozen=True)
class Cost:
    """Per init: pretraining runs now, runs the plan asks for, and the median seconds of one run's
    pretraining and of one pretraining seed's evaluation (its jobs' own wall times)."""

    init: str
    runs_now: int
    runs_planned: int | None
    pretrain_s: float
    evaluation_s: float

    def seconds(self, runs: int) -> float:
        return runs * (self.pretrain_s + self.evaluation_s)


def costs(runs: pd.DataFrame, cells: list[CellPlan]) -> list[Cost]:
    """The cost of each init of a track's current runs, now and with the runs `cells` ask for. An init's
    planned runs are the most any of its cells needs; every baseline gets the most any init needs (a Δ
    pairs a run with the baselines' block of the same pretraining seed). Runs never go below today's."""
    by_init: dict[str, list[int | None]] = {}
    for c in cells:
        by_init.setdefault(c.init, []).append(c.runs_needed)
    need = {init: None if None in ns else max(ns) for init, ns in by_init.items()}
    baseline_need = None if None in need.values() else max(need.values(), default=0)
    out = []
    kinds = runs.drop_duplicates("init").set_index("init")["init_kind"]
    for init, df in runs.groupby("init", sort=True):
        per_seed = df.groupby("pretrain_seed")
        evaluation = float(per_seed["wall_time_s"].sum().median())
        pretrain = per_seed["pretrain_wall_time_s"].first().dropna()
        now = df["pretrain_seed"].nunique()
        planned = baseline_need if kinds[init] == "baseline" else need.get(init, now)
        out.append(Cost(init, now, None if planned is None else max(now, planned),
                        float(pretrain.median()) if len(pretrain) else 0.0, evaluation))
    return out


def render_plan(runs: pd.DataFrame, known_hashes: dict[str, str], target_points: float,
                fractions: list[float] | None = None, metric: str = "macro_f1",
                reference: str = REFERENCE_INIT, protocols: list[str] | None = None) -> str:
    """Markdown: per track, every Δ vs `reference` with its variance components, half-width now and the
    runs it would need for ±`target_points` (metric × 100), then the cost of that design (every
    protocol's jobs count in the cost, whichever protocols' Δs set the runs)."""
    from tabulate import tabulate

    from leaderboard.analysis import tables

    lines = []
    all_tables = tables(runs, known_hashes)
    for track in sorted({t.key.track for t in all_tables}):
        current = [t for t in all_tables if t.key.track == track and t.current]
        cells = plan_cells(current, target_points / 100, metric, fractions, reference, protocols)
        if not cells:
            lines += [f"## {track}: nothing to plan from (no Δ vs {reference} with at least 2 pretraining runs)", ""]
            continue
        lines += [f"## {track}: Δ vs {reference} within ±{target_points:g} points (95 %)", ""]
        rows = [[c.protocol, f"{c.fraction:.0%}", c.init, c.runs, f"{c.seeds:g}", f"{100 * math.sqrt(c.between):.1f}",
                 f"{100 * math.sqrt(c.within):.1f}", f"{100 * c.half_width:.1f}",
                 "—" if c.runs_needed is None else (f"{c.runs_needed}" + (" ✗" if c.runs_needed > c.runs else ""))]
                for c in cells]
        lines += [tabulate(rows, headers=["protocol", "labels", "init", "runs", "seeds per run", "sd between runs",
                                          "sd within a run", "half-width now", "runs for the target"],
                           tablefmt="github", disable_numparse=True), ""]
        missed = [c for c in cells if c.half_width > target_points / 100]
        lines += [f"{len(cells) - len(missed)} of {len(cells)} intervals are within ±{target_points:g} now "
                  "(✗: the cell needs more runs than it has; the projection keeps its seeds per run).", ""]
        track_runs = pd.concat([t.runs for t in current])
        plan = costs(track_runs, cells)
        rows, total_now, total_plan = [], 0.0, 0.0
        for c in plan:
            total_now += c.seconds(c.runs_now)
            total_plan += math.inf if c.runs_planned is None else c.seconds(c.runs_planned)
            rows.append([c.init, c.runs_now, "—" if c.runs_planned is None else c.runs_planned,
                         f"{c.pretrain_s / 60:.1f}", f"{c.evaluation_s / 60:.1f}", f"{c.seconds(c.runs_now) / 60:.0f}",
                         "—" if c.runs_planned is None else f"{c.seconds(c.runs_planned) / 60:.0f}"])
        lines += [tabulate(rows, headers=["init", "runs now", "runs planned", "pretraining per run (min)",
                                          "evaluation per run (min)", "now (min)", "planned (min)"],
                           tablefmt="github", disable_numparse=True), ""]
        measured = (track_runs["wall_time_s"].sum()
                    + track_runs.drop_duplicates(["init", "pretrain_seed"])["pretrain_wall_time_s"].fillna(0).sum())
        planned = "out of reach" if math.isinf(total_plan) else f"≈ {total_plan / 60:.0f} min"
        lines += [f"Whole track: {planned} with the planned runs, against ≈ {total_now / 60:.0f} min now by the same "
                  f"medians ({measured / 60:.0f} min by the results' own times). A projection from the runs so far: "
                  "every added run evaluated like the others, on the machine that made them.", ""]
    return "\n".join(lines) if lines else "no results\n"


# ------------------------------------------------------------------------------- the ablation

@dataclass(frozen=True)
class SlopePlan:
    """One fit of the variance-vs-size ablation (a method × evaluation protocol) and the pretraining runs
    per subset at which its difference of slopes (diversity − size) would be within ±target."""

    init: str
    eval_protocol: str
    difference: stats.Interval  # as the page shows it (Bonferroni-widened over the track's fits)
    subsets: int
    runs_per_subset: float
    runs_needed: int | None  # per subset; None: more than MAX_RUNS


def slope_half_width(half_width: float, n_points: int, subsets: int, level: float, runs: float) -> float:
    """The half-width of a fit's interval with `runs` pretraining runs per subset, from its `half_width`
    now over `n_points` runs of `subsets` subsets: replicating every subset multiplies X'X, so the standard
    error scales as 1/√runs (the residual variance as estimated now), and the t quantile follows the
    degrees of freedom (points − 3)."""
    if subsets * runs <= 3:
        return math.inf
    se = half_width / float(sps.t.ppf(0.5 + level / 2, n_points - 3))
    return float(sps.t.ppf(0.5 + level / 2, subsets * runs - 3)) * se * math.sqrt(n_points / subsets / runs)


def plan_slopes(ablation_runs: pd.DataFrame, target: float) -> dict[str, list[SlopePlan]]:
    """Per track: every fit of the ablation (`leaderboard.ablation`, at the page's confidence level), with
    the runs per subset for a half-width of `target` (`slope_half_width`)."""
    from leaderboard import ablation

    runs = ablation.expand(ablation_runs)
    out: dict[str, list[SlopePlan]] = {}
    for track in sorted(runs["track"].unique()):
        groups = list(runs[runs["track"] == track].groupby(["init", "eval_protocol"], sort=True))
        level = 1 - (1 - stats.CONFIDENCE) / len(groups)  # as the page: Bonferroni over the track's fits
        plans = []
        for (init, eval_protocol), g in groups:
            points = ablation.run_points(g)
            fit = ablation.fit_slopes(points, confidence=level)
            if fit is None:
                continue
            subsets = len(points.drop_duplicates(["subjects", "frames"]))
            half = (fit.difference.high - fit.difference.low) / 2
            needed = next((r for r in range(1, MAX_RUNS + 1)
                           if slope_half_width(half, fit.n_points, subsets, level, r) <= target), None)
            plans.append(SlopePlan(init, eval_protocol, fit.difference, subsets, fit.n_points / subsets, needed))
        out[track] = plans
    return out


def ablation_run_seconds(expanded: pd.DataFrame) -> pd.Series:
    """Seconds of each pretraining run of an ablation (`ablation.expand` rows of one method): its
    pretraining and the jobs of every evaluation protocol, by the results' own times. A subset on both
    axes is one pretraining run with one set of jobs, whichever axis lists it."""
    g = expanded.drop_duplicates(["subjects", "frames", "pretrain_seed", "eval_protocol", "seed"])
    per_run = g.groupby(["subjects", "frames", "pretrain_seed"])
    return per_run["pretrain_wall_time_s"].first().fillna(0) + per_run["wall_time_s"].sum()


def render_slope_plan(ablation_runs: pd.DataFrame, target_points: float) -> str:
    """Markdown: per track, each ablation fit's difference of slopes and the runs per subset for ±target;
    then, per method, what the added pretraining runs (each with its evaluation jobs) would cost."""
    from tabulate import tabulate

    from leaderboard import ablation

    expanded = ablation.expand(ablation_runs)
    lines = []
    for track, plans in plan_slopes(ablation_runs, target_points / 100).items():
        lines += [f"## {track}: variance-vs-size ablation, difference of slopes within ±{target_points:g} F1 points "
                  "per doubling", ""]
        if not plans:
            lines += ["No fit to plan from (too few distinct subsets).", ""]
            continue
        rows = [[p.init, p.eval_protocol, f"{100 * p.difference.mean:+.1f} [{100 * p.difference.low:+.1f}, "
                 f"{100 * p.difference.high:+.1f}]", f"{100 * (p.difference.high - p.difference.low) / 2:.1f}",
                 p.subsets, f"{p.runs_per_subset:g}", "—" if p.runs_needed is None else p.runs_needed] for p in plans]
        lines += [tabulate(rows, headers=["method", "evaluated by", "diversity − size now (page's interval)",
                                          "half-width now", "subsets", "runs per subset now", "runs per subset for the target"],
                           tablefmt="github", disable_numparse=True), ""]
        tr = expanded[expanded["track"] == track]
        for init, g in tr.groupby("init", sort=True):
            mine = [p for p in plans if p.init == init]
            if not mine:
                continue
            if any(p.runs_needed is None for p in mine):
                lines += [f"{init}: out of reach (more than {MAX_RUNS} runs per subset)."]
                continue
            need = max(p.runs_needed for p in mine)
            seconds = float(ablation_run_seconds(g).median())
            added = max(0.0, need - mine[0].runs_per_subset) * mine[0].subsets
            lines += [f"{init}: {need} runs per subset, {added:g} more pretraining runs with their evaluation "
                      f"jobs, ≈ {added * seconds / 60:.0f} min at the median {seconds / 60:.1f} min per run "
                      "(the results' own times)."]
        rough = any(p.runs_per_subset < 2 for p in plans)
        lines += ["", "A projection from the runs so far: it assumes added runs scatter about the fit as these do."
                  + (" With one pretraining run per subset, that scatter is seen only through the fit's few residual "
                     "degrees of freedom: a rough guide." if rough else ""), ""]
    return "\n".join(lines) if lines else "no ablation results\n"
