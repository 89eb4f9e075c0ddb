"""The learning curve's numbers: per track × method × budget the evaluation scores and the pool diagnostics
its checkpoints recorded, the budget from which the pool k-NN has risen by 5 points, and whether each
method's curve has flattened (its section is rendered by `render.learning_curve_section`, its figure drawn
by `figures.plot_learning_curve`).

As everywhere on the leaderboard the pretraining runs are the independent replicates
(`analysis.nested_interval`): with one pretraining run per budget, the protocol's default, an interval
covers that run's downstream seeds only. Nothing here is a test: "flattened" compares the last gain of
the curve with the half-width of its interval, which says whether more budget moved the score by more
than the seeds scatter it, not whether the gain is real.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leaderboard import analysis
from leaderboard.results import LEARNING_CURVE

# "Steps until the pool k-NN rises by 5 points": the rise (after − before, as a fraction) that every
# pretraining run of a budget must reach. Above the scatter of runs that did not learn: at the cpu track's
# 150 steps the 15 runs of AE, BYOL and SimSiam rose by −3.0 to +4.2 points (their committed diagnostics),
# every SimCLR and VICReg run by +10.8 to +29.3.
KNN_RISE = 0.05
# Diagnostics are recorded to 6 decimals, so a rise of exactly 5 points can read 0.049999…: within this of the
# bar counts as reaching it.
RISE_TOLERANCE = 1e-9
COLUMNS = ["steps", "level", "eval_protocol"]


def expand(runs: pd.DataFrame) -> pd.DataFrame:
    """The learning-curve runs of `runs` with their budget (steps), level and evaluation protocol as columns."""
    runs = runs[runs["protocol"] == LEARNING_CURVE]
    if runs.empty:
        return runs.assign(**{c: pd.Series(dtype=object) for c in COLUMNS})
    fields = pd.DataFrame(list(runs["ablation"]), index=runs.index)
    out = runs.assign(steps=fields["steps"].astype(int), level=fields["level"].astype(int),
                      eval_protocol=fields["eval_protocol"])
    return out.sort_values(["track", "init", "eval_protocol", "steps", "pretrain_seed", "seed"], kind="stable")


def _value(part: dict | None, key: str) -> float:
    value = (part or {}).get(key)
    return math.nan if value is None else float(value)


def checkpoints(curve: pd.DataFrame) -> pd.DataFrame:
    """One row per pretraining run (init, steps, pretraining seed) with the diagnostics its checkpoint
    recorded; k-NN values are NaN where the pool has no labels."""
    rows = []
    for (init, steps, seed), g in curve.groupby(["init", "steps", "pretrain_seed"], sort=True):
        d = g["diagnostics"].iloc[0] or {}
        before, after = d.get("before"), d.get("after")
        rows.append({"init": init, "steps": int(steps), "pretrain_seed": int(seed),
                     "encoder_change": _value(d, "encoder_change"),
                     "rank_before": _value(before, "effective_rank"), "rank_after": _value(after, "effective_rank"),
                     "knn_before": _value(before, "knn_macro_f1"), "knn_after": _value(after, "knn_macro_f1")})
    return pd.DataFrame(rows, columns=["init", "steps", "pretrain_seed", "encoder_change", "rank_before",
                                       "rank_after", "knn_before", "knn_after"])


@dataclass(frozen=True)
class Score:
    """One evaluation protocol's scores at one budget: validation macro-F1 (mean) and test macro-F1."""

    val: float
    test: analysis.Cell


@dataclass(frozen=True)
class BudgetRow:
    """One method at one budget: the means over its pretraining runs of what their checkpoints recorded,
    and each evaluation protocol's scores."""

    init: str
    steps: int
    pretrain_runs: int
    encoder_change: float
    rank: tuple[float, float]  # before, after
    knn: tuple[float, float]  # before, after (NaN without pool labels)
    scores: dict[str, Score] = field(default_factory=dict)


def budget_rows(curve: pd.DataFrame) -> list[BudgetRow]:
    """One row per init × budget of one track's (expanded) curve runs, in init then budget order."""
    ckpts = checkpoints(curve)
    out = []
    for (init, steps), g in curve.groupby(["init", "steps"], sort=True):
        mine = ckpts[(ckpts["init"] == init) & (ckpts["steps"] == steps)]
        scores = {ev: Score(float(e["val_macro_f1"].mean()), analysis.nested_interval(e, "macro_f1"))
                  for ev, e in g.groupby("eval_protocol", sort=True)}
        out.append(BudgetRow(init, int(steps), len(mine), float(mine["encoder_change"].mean()),
                             (float(mine["rank_before"].mean()), float(mine["rank_after"].mean())),
                             (float(mine["knn_before"].mean()), float(mine["knn_after"].mean())), scores))
    return out


@dataclass(frozen=True)
class KnnRise:
    """The smallest budget at which every pretraining run of `init` raised the pool k-NN by `KNN_RISE`
    (None: none of its budgets did, up to `largest`), and the smallest such rise at that budget (at
    `largest` when none did). `labelled`: the pool has labels (else there is no k-NN to read)."""

    init: str
    steps: int | None
    largest: int
    rise: float
    labelled: bool = True


def knn_rise(curve: pd.DataFrame, threshold: float = KNN_RISE) -> list[KnnRise]:
    """Per init of one track's curve runs, in init order: `KnnRise`."""
    ckpts = checkpoints(curve).assign(rise=lambda d: d["knn_after"] - d["knn_before"])
    out = []
    for init, g in ckpts.groupby("init", sort=True):
        largest = int(g["steps"].max())
        if g["rise"].isna().all():
            out.append(KnnRise(init, None, largest, math.nan, labelled=False))
            continue
        worst = g.groupby("steps")["rise"].min()  # the run that rose least decides: "in every pretraining run"
        reached = worst[worst >= threshold - RISE_TOLERANCE]
        steps = int(reached.index.min()) if len(reached) else None
        out.append(KnnRise(init, steps, largest, float(worst[steps if steps is not None else largest])))
    return out


@dataclass(frozen=True)
class Trend:
    """The last step of one init's curve under one evaluation protocol: the gain in mean test macro-F1 from
    budget `before` to `after` (its largest) and the half-width of the interval at `after`. `flattened`:
    the gain is below that half-width (None: no interval to compare with)."""

    init: str
    before: int
    after: int
    gain: float
    half_width: float

    @property
    def flattened(self) -> bool | None:
        if math.isnan(self.half_width):
            return None
        return self.gain < self.half_width


def trends(curve: pd.DataFrame, eval_protocol: str) -> list[Trend]:
    """Per init with at least two budgets under `eval_protocol`, in init order: `Trend`."""
    out = []
    runs = curve[curve["eval_protocol"] == eval_protocol]
    for init, g in runs.groupby("init", sort=True):
        budgets = sorted(g["steps"].unique())
        if len(budgets) < 2:
            continue
        before, after = (analysis.nested_interval(g[g["steps"] == b], "macro_f1").interval for b in budgets[-2:])
        half = (after.high - after.low) / 2 if after.n >= 2 else math.nan
        out.append(Trend(init, int(budgets[-2]), int(budgets[-1]), after.mean - before.mean, half))
    return out


def reference_cells(main: pd.DataFrame, curve: pd.DataFrame, eval_protocol: str) -> dict[str, analysis.Cell]:
    """The `imagenet` and `random` cells of the track's main results under `eval_protocol` at the curve's
    label fraction and with the protocol version the curve evaluated with (nothing where they are missing)."""
    runs = curve[curve["eval_protocol"] == eval_protocol]
    if runs.empty:
        return {}
    hashes = {ab["eval_protocol_hash"] for ab in runs["ablation"] if ab.get("eval_protocol_hash")}
    fractions = set(runs["fraction"])
    mine = main[(main["track"].isin(set(runs["track"]))) & (main["protocol"] == eval_protocol)
                & (main["fraction"].isin(fractions)) & (main["protocol_hash"].isin(hashes))]
    return {init: analysis.nested_interval(mine[mine["init"] == init], "macro_f1")
            for init in analysis.REFERENCES if (mine["init"] == init).any()}


def start_values(curve: pd.DataFrame) -> dict[str, float]:
    """Per init: its pool k-NN macro-F1 before pretraining (the mean over its pretraining runs' initial
    networks), NaN without pool labels."""
    ckpts = checkpoints(curve)
    return {init: float(np.nanmean(g["knn_before"])) if g["knn_before"].notna().any() else math.nan
            for init, g in ckpts.groupby("init", sort=True)}
