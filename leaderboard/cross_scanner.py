"""The cross-scanner protocol's statistics: in-scanner vs held-out-scanner macro-F1 and the drop between
them (its section is rendered by `render.cross_scanner_section`).

Every run holds one scanner out: its probe is trained and selected on the other scanners' images and
scores two test sets with the same model, the held-out scanner's test images (`macro_f1`) and the
training scanners' own (`in_scanner_macro_f1`). Their difference is paired within the run, so the drop
is the scanner shift alone. Per track × init × evaluation protocol × label fraction the runs of every
held-out scanner are pooled (the leave-one-scanner-out estimate); as everywhere on the leaderboard the
pretraining runs are the independent replicates (`analysis.nested_interval`, `analysis.paired_delta`):
with one pretraining run the intervals are over its downstream jobs and no test is made.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from leaderboard import analysis, stats

KEYS = ("pretrain_seed", "seed", "held_out")


def expand(runs: pd.DataFrame) -> pd.DataFrame:
    """The cross-scanner runs of `runs` with their held-out scanner and evaluation protocol as columns."""
    runs = runs[runs["scanner"].notna()]
    if runs.empty:
        return runs.assign(held_out=pd.Series(dtype=str), eval_protocol=pd.Series(dtype=str))
    fields = pd.DataFrame(list(runs["scanner"]), index=runs.index)
    return runs.assign(held_out=fields["held_out"], eval_protocol=fields["eval_protocol"]).sort_values(
        ["track", "init", "eval_protocol", "fraction", "held_out", "pretrain_seed", "seed"], kind="stable")


@dataclass(frozen=True)
class Row:
    """One init × evaluation protocol × label fraction of a track."""

    init: str
    eval_protocol: str
    fraction: float
    in_scanner: analysis.Cell
    held_out: analysis.Cell
    drop: stats.PairedComparison  # held out − in scanner
    pretrain_runs: int
    p_holm: float = math.nan

    @property
    def tested(self) -> bool:
        return not math.isnan(self.drop.p)


def rows(track_runs: pd.DataFrame) -> list[Row]:
    """The section's rows for one track's (expanded) runs, the drops' p-values Holm-adjusted over every
    test of the track (all inits, evaluation protocols and fractions)."""
    out = []
    for (init, ev, fraction), g in track_runs.groupby(["init", "eval_protocol", "fraction"], sort=True):
        own = g[[*KEYS, "macro_f1"]]
        ref = g[[*KEYS, "in_scanner_macro_f1"]].rename(columns={"in_scanner_macro_f1": "macro_f1"})
        comp, n_pre, _pairs = analysis.paired_delta(own, ref, "macro_f1", KEYS)
        out.append(Row(init, ev, float(fraction), analysis.nested_interval(g, "in_scanner_macro_f1"),
                       analysis.nested_interval(g, "macro_f1"), comp, n_pre))
    tested = [i for i, r in enumerate(out) if r.tested]
    adjusted = stats.holm([out[i].drop.p for i in tested])
    for i, p in zip(tested, adjusted, strict=True):
        r = out[i]
        out[i] = Row(r.init, r.eval_protocol, r.fraction, r.in_scanner, r.held_out, r.drop, r.pretrain_runs, float(p))
    return out


def supports(row: Row) -> str:
    """What the statistics support about the drop of one row, and no more."""
    d = row.drop.diff
    if row.drop.constant:
        return "the same drop in every run (no variation, no test)"
    if not row.tested:
        side = " below 0" if d.high < 0 else " above 0" if d.low > 0 else " spanning 0"
        return f"no test: one pretraining run (its † interval,{side}, covers that run's jobs only)"
    if row.p_holm < stats.ALPHA:
        return "held-out scanners score lower" if d.mean < 0 else "held-out scanners score higher"
    return "no detectable difference"


def per_scanner(track_runs: pd.DataFrame) -> pd.DataFrame:
    """Mean drop (held out − in scanner) per init × evaluation protocol (rows) and held-out scanner
    (columns), over every fraction and seed: descriptive, no interval."""
    drop = track_runs.assign(drop=track_runs["macro_f1"] - track_runs["in_scanner_macro_f1"])
    table = drop.groupby(["init", "eval_protocol", "held_out"])["drop"].mean().unstack("held_out")
    return table.reindex(columns=sorted(table.columns)).astype(float)
