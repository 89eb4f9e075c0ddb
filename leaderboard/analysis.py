"""From runs to what the leaderboard shows: tables per (track, protocol, protocol hash), cell
summaries over seeds, Δ vs the reference init, and the across-task ranking of a track.

Shared by the markdown renderer and the figures so both always show the same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leaderboard import stats

REFERENCE_INIT = "imagenet"
BASELINE_ORDER = ["imagenet", "random"]
METRICS = {"macro_f1": "macro-F1", "balanced_accuracy": "balanced accuracy", "accuracy": "accuracy"}


@dataclass(frozen=True)
class TableKey:
    track: str
    protocol: str
    protocol_hash: str
    protocol_version: int


@dataclass(frozen=True)
class Table:
    """The runs of one track × protocol × protocol hash: they may be compared with each other."""

    key: TableKey
    runs: pd.DataFrame
    current: bool  # the hash used for the track's ranking (see `current_hashes`)

    @property
    def inits(self) -> list[str]:
        return init_order(self.runs)

    @property
    def fractions(self) -> list[float]:
        return sorted(self.runs["fraction"].unique())


def init_order(runs: pd.DataFrame) -> list[str]:
    """SSL inits alphabetically, then the baselines (imagenet, random, then any other)."""
    names = sorted(runs["init"].unique())
    kinds = runs.drop_duplicates("init").set_index("init")["init_kind"]
    ssl = [n for n in names if kinds[n] != "baseline"]
    base = [n for n in names if kinds[n] == "baseline"]
    base.sort(key=lambda n: (BASELINE_ORDER.index(n) if n in BASELINE_ORDER else len(BASELINE_ORDER), n))
    return ssl + base


def current_hashes(runs: pd.DataFrame, known: dict[str, str]) -> dict[tuple[str, str], str]:
    """Per (track, protocol): the hash of the current protocol file when results carry it, else the
    highest protocol version (ties: most runs, then the hash) — the tables the ranking uses."""
    chosen = {}
    for (track, protocol), df in runs.groupby(["track", "protocol"], sort=True):
        hashes = set(df["protocol_hash"])
        if known.get(protocol) in hashes:
            chosen[(track, protocol)] = known[protocol]
            continue
        counts = df.groupby(["protocol_hash", "protocol_version"]).size().reset_index(name="n")
        best = counts.sort_values(["protocol_version", "n", "protocol_hash"], ascending=[False, False, True]).iloc[0]
        chosen[(track, protocol)] = best["protocol_hash"]
    return chosen


def tables(runs: pd.DataFrame, known: dict[str, str]) -> list[Table]:
    """One table per (track, protocol, hash); results of different hashes never share a table."""
    chosen = current_hashes(runs, known)
    out = []
    for (track, protocol, phash), df in runs.groupby(["track", "protocol", "protocol_hash"], sort=True):
        key = TableKey(track, protocol, phash, int(df["protocol_version"].max()))
        out.append(Table(key, df.reset_index(drop=True), chosen[(track, protocol)] == phash))
    # Within a track × protocol the current table comes first, older versions after it.
    out.sort(key=lambda t: (t.key.track, t.key.protocol, not t.current, -t.key.protocol_version, t.key.protocol_hash))
    return out


def cell_values(runs: pd.DataFrame, init: str, fraction: float, metric: str) -> pd.Series:
    """The metric of every seed of one cell, indexed by seed."""
    df = runs[(runs["init"] == init) & (runs["fraction"] == fraction)]
    return df.set_index("seed")[metric].sort_index()


def summary(table: Table, metric: str) -> dict[tuple[str, float], stats.Interval]:
    """Mean and t-CI over seeds of every (init, fraction) cell that has at least one run."""
    out = {}
    for (init, fraction), df in table.runs.groupby(["init", "fraction"], sort=True):
        out[(init, fraction)] = stats.mean_ci(df[metric].to_numpy())
    return out


@dataclass(frozen=True)
class Delta:
    comparison: stats.PairedComparison
    p_holm: float

    @property
    def marker(self) -> str:
        """▲ significant win, ▼ significant loss (Holm-adjusted p < α), empty otherwise."""
        if math.isnan(self.p_holm) or self.p_holm >= stats.ALPHA:
            return ""
        return "▲" if self.comparison.diff.mean > 0 else "▼"


def deltas(table: Table, metric: str, reference: str = REFERENCE_INIT) -> dict[tuple[str, float], Delta]:
    """Paired Δ vs the reference init over matched seeds; Holm across the inits of each column."""
    out: dict[tuple[str, float], Delta] = {}
    if reference not in set(table.runs["init"]):
        return out
    others = [i for i in table.inits if i != reference]
    for fraction in table.fractions:
        ref = cell_values(table.runs, reference, fraction, metric)
        comps = {}
        for init in others:
            own = cell_values(table.runs, init, fraction, metric)
            seeds = own.index.intersection(ref.index)
            if len(own) == 0:
                continue
            comps[init] = stats.paired_comparison(own[seeds].to_numpy(), ref[seeds].to_numpy())
        adjusted = stats.holm([c.p for c in comps.values()])
        for (init, comp), p in zip(comps.items(), adjusted, strict=True):
            out[(init, fraction)] = Delta(comp, float(p))
    return out


@dataclass(frozen=True)
class Ranking:
    """The across-task comparison of one track: tasks are (protocol, fraction) of the current hashes."""

    track: str
    tasks: list[tuple[str, float]]
    inits: list[str]                       # ranked inits (results on every task)
    left_out: dict[str, list[tuple[str, float]]]  # init → the tasks it has no result for
    task_means: pd.DataFrame               # tasks × inits, mean macro-F1 over seeds
    average_ranks: pd.Series
    friedman: stats.Friedman | None
    min_blocks: int | None                 # blocks the Nemenyi test needs for k inits
    cd: float | None
    iqm: dict[str, stats.Interval] = field(default_factory=dict)
    improvement: dict[str, stats.Interval] = field(default_factory=dict)  # P(init > reference)

    @property
    def enough_blocks(self) -> bool:
        return self.cd is not None

    @property
    def best(self) -> str | None:
        if self.average_ranks.empty:
            return None
        ordered = sorted(self.average_ranks.items(), key=lambda kv: (kv[1], kv[0]))
        return ordered[0][0]


def ranking(track_tables: list[Table], metric: str = "macro_f1", reference: str = REFERENCE_INIT) -> Ranking:
    """Average ranks, Friedman test, Nemenyi CD, IQM and P(improvement) over a track's current tables."""
    current = [t for t in track_tables if t.current]
    track = current[0].key.track if current else (track_tables[0].key.track if track_tables else "")
    runs = pd.concat([t.runs for t in current], ignore_index=True) if current else pd.DataFrame(
        columns=["init", "protocol", "fraction", "seed", metric, "init_kind"])
    tasks = sorted({(p, f) for p, f in zip(runs["protocol"], runs["fraction"], strict=True)})
    all_inits = init_order(runs) if len(runs) else []
    have = {(i, p, f) for i, p, f in zip(runs["init"], runs["protocol"], runs["fraction"], strict=True)}
    left_out = {i: [t for t in tasks if (i, *t) not in have] for i in all_inits}
    left_out = {i: missing for i, missing in left_out.items() if missing}
    inits = [i for i in all_inits if i not in left_out]

    means = runs.groupby(["protocol", "fraction", "init"])[metric].mean()
    task_means = pd.DataFrame(
        [[means.get((p, f, i), np.nan) for i in inits] for p, f in tasks],
        index=pd.MultiIndex.from_tuples(tasks, names=["protocol", "fraction"]) if tasks else None,
        columns=inits, dtype=float)

    avg = stats.average_ranks(task_means) if len(inits) and len(tasks) else pd.Series(dtype=float)
    fried = stats.friedman(task_means) if len(inits) >= 3 and len(tasks) >= 2 else None
    min_blocks = stats.min_blocks_for_nemenyi(len(inits)) if len(inits) >= 3 else None
    cd = (stats.nemenyi_cd(len(inits), len(tasks))
          if fried is not None and min_blocks is not None and len(tasks) >= min_blocks else None)

    def by_task(init: str) -> list[np.ndarray]:
        return [runs[(runs["init"] == init) & (runs["protocol"] == p) & (runs["fraction"] == f)][metric].to_numpy()
                for p, f in tasks]

    iqm = {i: stats.iqm_interval(by_task(i)) for i in inits}
    improvement = {}
    if reference in inits:
        ref = by_task(reference)
        improvement = {i: stats.probability_of_improvement_interval(by_task(i), ref) for i in inits if i != reference}
    return Ranking(track, tasks, inits, left_out, task_means, avg, fried, min_blocks, cd, iqm, improvement)


def per_class_f1(runs: pd.DataFrame, init: str) -> pd.DataFrame:
    """Mean per-class test F1 over seeds: rows (protocol, fraction), columns class names."""
    df = runs[runs["init"] == init]
    classes = list(df["class_names"].iloc[0]) if len(df) else []
    rows = {}
    for (protocol, fraction), cell in df.groupby(["protocol", "fraction"], sort=True):
        per_seed = pd.DataFrame(list(cell["per_class_f1"]))
        rows[(protocol, fraction)] = per_seed.reindex(columns=classes).mean(axis=0)
    return pd.DataFrame(rows).T.reindex(columns=classes)
