"""The positives ablation's numbers: per track × method × evaluation protocol × label fraction, each way of
drawing positive pairs (`same_frame`, `temporal:K`) with its test macro-F1 and its checkpoints' diagnostics, and
its paired Δ against the protocol's reference mode (its section is rendered by `render.positives_section`).

A mode's runs are paired with the reference mode's runs of the same pretraining seed and downstream seed: the
same initial network, the same label subset, only the positive pairs differ. As everywhere on the leaderboard
the pretraining runs are the replicates (`analysis.paired_delta`: the paired t-test over the pretraining runs'
mean differences, no test with one run), and the Holm correction runs over every comparison of the track's
section, so its marks control the family-wise error of the ablation on that track.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leaderboard import analysis, stats
from leaderboard.results import POSITIVES

COLUMNS = ["positives", "level", "eval_protocol"]


def expand(runs: pd.DataFrame) -> pd.DataFrame:
    """The positives runs of `runs` with their mode, level and evaluation protocol as columns."""
    runs = runs[runs["protocol"] == POSITIVES]
    if runs.empty:
        return runs.assign(**{c: pd.Series(dtype=object) for c in COLUMNS})
    fields = pd.DataFrame(list(runs["ablation"]), index=runs.index)
    out = runs.assign(positives=fields["positives"], level=fields["level"].astype(int),
                      eval_protocol=fields["eval_protocol"])
    return out.sort_values(["track", "init", "eval_protocol", "fraction", "level", "pretrain_seed", "seed"],
                           kind="stable")


@dataclass(frozen=True)
class ModeScore:
    """One mode of one method at one (evaluation protocol, fraction): its test macro-F1 and the mean of its
    checkpoints' diagnostics."""

    positives: str
    level: int
    cell: analysis.Cell
    knn_after: float
    rank_after: float


@dataclass(frozen=True)
class Comparison:
    """A mode against the reference mode, paired on (pretraining seed, seed); `p_holm` over the track."""

    init: str
    eval_protocol: str
    fraction: float
    positives: str
    reference: str
    delta: analysis.Delta


def _diagnostic(runs: pd.DataFrame, *path: str) -> float:
    values = []
    for d in runs.drop_duplicates(["pretrain_seed"])["diagnostics"]:
        for key in path:
            d = (d or {}).get(key)
        if d is not None:
            values.append(float(d))
    return float(np.mean(values)) if values else math.nan


def mode_scores(runs: pd.DataFrame, metric: str = "macro_f1") -> dict[tuple[str, str, float], list[ModeScore]]:
    """Per (init, evaluation protocol, fraction) of one track's expanded runs: every mode, in the protocol's order."""
    out: dict[tuple[str, str, float], list[ModeScore]] = {}
    for (init, ev, fraction), g in runs.groupby(["init", "eval_protocol", "fraction"], sort=True):
        out[(init, ev, float(fraction))] = [
            ModeScore(mode, int(h["level"].iloc[0]), analysis.nested_interval(h, metric),
                      _diagnostic(h, "after", "knn_macro_f1"), _diagnostic(h, "after", "effective_rank"))
            for mode, h in sorted(g.groupby("positives"), key=lambda kv: int(kv[1]["level"].iloc[0]))]
    return out


def reference_mode(runs: pd.DataFrame) -> str | None:
    """The reference mode the runs were made to be compared with (each run records its protocol's), or None
    when they disagree or there are none."""
    refs = {ab.get("reference") for ab in runs["ablation"]}
    return refs.pop() if len(refs) == 1 else None


def comparisons(runs: pd.DataFrame, reference: str, metric: str = "macro_f1") -> list[Comparison]:
    """Every mode other than `reference` against it, per (init, evaluation protocol, fraction) of one track's
    expanded runs, Holm-corrected together."""
    raw = []
    for (init, ev, fraction), g in runs.groupby(["init", "eval_protocol", "fraction"], sort=True):
        ref = g[g["positives"] == reference]
        if ref.empty:
            continue
        for mode, h in sorted(g.groupby("positives"), key=lambda kv: int(kv[1]["level"].iloc[0])):
            if mode == reference:
                continue
            out = analysis.paired_delta(h, ref, metric)
            if out is not None:
                raw.append(((init, ev, float(fraction), mode), out))
    adjusted = stats.holm([comp.p for _, (comp, _, _) in raw])
    return [Comparison(init, ev, fraction, mode, reference, analysis.Delta(comp, float(p), n_pre, pairs))
            for ((init, ev, fraction, mode), (comp, n_pre, pairs)), p in zip(raw, adjusted, strict=True)]
