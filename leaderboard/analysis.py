"""From runs to what the leaderboard shows: tables per (track, protocol, protocol hash), cell
summaries over the nested runs, Δ vs the reference inits, and the across-task summary of a track.

Runs are nested (leaderboard.stats): the pretraining runs of a cell are its independent replicates.

Shared by the markdown renderer and the figures so both always show the same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leaderboard import stats
from leaderboard.results import RANDOM_START, init_method, init_start

REFERENCE_INIT = "imagenet"
# The untrained network of the same draw: does pretraining help at all? Only SSL inits are tested against it
# (ImageNet against random says nothing about pretraining on the track's video).
SIGNAL_INIT = "random"
REFERENCES = (REFERENCE_INIT, SIGNAL_INIT)
# A continued init (`<method>@imagenet`: SSL on the videos from ImageNet weights) is compared with imagenet
# (what SSL on the videos adds to ImageNet) and, under this reference, with the same method from random
# weights (what ImageNet adds to SSL), instead of with `random`. Its reference init is per row
# (`reference_init`), so this names the comparison, not an init.
SAME_METHOD = "same method from random"
DELTA_REFERENCES = REFERENCES + (SAME_METHOD,)
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


@dataclass(frozen=True)
class Cell:
    """One init × label fraction of a table: its mean and interval over the pretraining runs.

    `interval` is the t-interval over the means of the pretraining runs (each the mean over its
    downstream seeds), clipped to [0, 1]. With a single pretraining run it is over the downstream
    seeds of that run instead, and `conditional` says so: it then covers label subsets and training
    noise, not the variation between pretraining runs.
    """

    interval: stats.Interval
    pretrain_runs: int
    runs: int

    @property
    def conditional(self) -> bool:
        return self.pretrain_runs < 2


def cell_runs(runs: pd.DataFrame, init: str, fraction: float) -> pd.DataFrame:
    return runs[(runs["init"] == init) & (runs["fraction"] == fraction)]


def nested_interval(df: pd.DataFrame, metric: str) -> Cell:
    """Mean and interval of one cell's runs (columns pretrain_seed, `metric`), nested as `Cell` says."""
    clusters = df["pretrain_seed"].to_numpy()
    values = df[metric].to_numpy(dtype=float)
    n_pre = len(np.unique(clusters))
    iv = stats.mean_ci(stats.cluster_means(values, clusters) if n_pre >= 2 else values)
    return Cell(iv.clipped(0.0, 1.0), n_pre, len(values))


def summary(table: Table, metric: str) -> dict[tuple[str, float], Cell]:
    """Every (init, fraction) cell that has at least one run."""
    return {(init, fraction): nested_interval(df, metric)
            for (init, fraction), df in table.runs.groupby(["init", "fraction"], sort=True)}


@dataclass(frozen=True)
class Delta:
    comparison: stats.PairedComparison
    p_holm: float
    pretrain_runs: int  # the replicates the test is over (pretraining runs; 1 = no test)
    pairs: int  # matched (pretraining seed, seed) jobs

    @property
    def tested(self) -> bool:
        return not math.isnan(self.comparison.p)

    @property
    def marker(self) -> str:
        """▲ significant win, ▼ significant loss (Holm-adjusted p < α), empty otherwise."""
        if math.isnan(self.p_holm) or self.p_holm >= stats.ALPHA:
            return ""
        return "▲" if self.comparison.diff.mean > 0 else "▼"


def paired_differences(own: pd.DataFrame, ref: pd.DataFrame, metric: str,
                       keys: tuple[str, ...] = ("pretrain_seed", "seed")) -> tuple[np.ndarray, np.ndarray] | None:
    """(own − reference per matched job, the job's pretraining seed) over jobs matched on `keys`; None
    when no job matches."""
    keys = list(keys)
    joined = own[keys + [metric]].merge(ref[keys + [metric]], on=keys, suffixes=("", "_ref"))
    if joined.empty:
        return None
    return (joined[metric].to_numpy(float) - joined[f"{metric}_ref"].to_numpy(float),
            joined["pretrain_seed"].to_numpy())


def paired_delta(own: pd.DataFrame, ref: pd.DataFrame, metric: str, keys: tuple[str, ...] = ("pretrain_seed", "seed")
                 ) -> tuple[stats.PairedComparison, int, int] | None:
    """Δ of one cell against the reference over jobs matched on `keys` (pretraining seed, seed): the
    paired t-test over the pretraining runs' mean differences (≥ 2 runs), none with a single run (its
    interval, over that run's downstream jobs, is then conditional)."""
    paired = paired_differences(own, ref, metric, keys)
    if paired is None:
        return None
    d, clusters = paired
    n_pre = len(np.unique(clusters))
    if n_pre >= 2:
        means = stats.cluster_means(d, clusters)
        comp = stats.paired_comparison(means, np.zeros_like(means))
    else:
        comp = stats.paired_comparison(d, np.zeros_like(d))
        comp = stats.PairedComparison(comp.diff, math.nan, comp.constant)  # conditional: no test
    return comp, n_pre, len(d)


def reference_init(reference: str, init: str) -> str:
    """The init whose runs `init` is paired with under `reference`: the reference itself, or for
    `SAME_METHOD` the method of the continued init (`simclr@imagenet` → `simclr`)."""
    return init_method(init) if reference == SAME_METHOD else reference


def deltas(track_tables: list[Table], metric: str, references: tuple[str, ...] = DELTA_REFERENCES
           ) -> dict[tuple[str, str, str, float], Delta]:
    """Paired Δ, keyed (reference, protocol, init, fraction), for every cell of a track's current tables:
    against `imagenet` every other init, against `random` the SSL inits from random weights, and each
    continued init against its method from random weights (`SAME_METHOD`).

    The Holm family is every test of the track against any reference (all protocols, fractions and
    inits), so a track's marks control the family-wise error of the whole track."""
    raw: dict[tuple[str, str, str, float], tuple[stats.PairedComparison, int, int]] = {}
    for reference in references:
        for table in track_tables:
            if not table.current or (reference != SAME_METHOD and reference not in set(table.runs["init"])):
                continue
            ssl = set(table.runs.loc[table.runs["init_kind"] == "ssl", "init"])
            for fraction in table.fractions:
                for init in compared_inits(table, reference, ssl):
                    ref = cell_runs(table.runs, reference_init(reference, init), fraction)
                    out = paired_delta(cell_runs(table.runs, init, fraction), ref, metric)
                    if out is not None:
                        raw[(reference, table.key.protocol, init, fraction)] = out
    keys = list(raw)
    adjusted = stats.holm([raw[k][0].p for k in keys])
    return {k: Delta(raw[k][0], float(p), raw[k][1], raw[k][2]) for k, p in zip(keys, adjusted, strict=True)}


def compared_inits(table: Table, reference: str, ssl: set[str] | None = None) -> list[str]:
    """The inits of `table` compared with `reference`, in table order: every other init against imagenet,
    the SSL inits from random weights against random, the continued inits whose method from random weights
    is in the table against it (`SAME_METHOD`)."""
    if ssl is None:
        ssl = set(table.runs.loc[table.runs["init_kind"] == "ssl", "init"])
    if reference == SIGNAL_INIT:
        return [i for i in table.inits if i in ssl and init_start(i) == RANDOM_START]
    if reference == SAME_METHOD:
        return [i for i in table.inits if i in ssl and init_start(i) != RANDOM_START and init_method(i) in ssl]
    return [i for i in table.inits if i != reference]


def family_size(track_deltas: dict[tuple[str, str, str, float], Delta]) -> int:
    return sum(d.tested for d in track_deltas.values())


@dataclass(frozen=True)
class Ranking:
    """The descriptive across-task summary of one track: tasks are (protocol, fraction) of the current
    hashes. No rank test: the tasks of one track share one dataset and the same checkpoints, so they
    are not the independent blocks a Friedman/Nemenyi test needs."""

    track: str
    tasks: list[tuple[str, float]]
    inits: list[str]                       # ranked inits (results on every task)
    left_out: dict[str, list[tuple[str, float]]]  # init → the tasks it has no result for
    task_means: pd.DataFrame               # tasks × inits, mean macro-F1 over runs
    average_ranks: pd.Series
    iqm: dict[str, stats.Interval] = field(default_factory=dict)
    improvement: dict[str, stats.Interval] = field(default_factory=dict)  # P(init > reference)

    @property
    def best(self) -> str | None:
        if self.average_ranks.empty:
            return None
        ordered = sorted(self.average_ranks.items(), key=lambda kv: (kv[1], kv[0]))
        return ordered[0][0]


def nested_by_task(runs: pd.DataFrame, init: str, tasks: list[tuple[str, float]], metric: str) -> stats.Nested:
    """An init's runs per task, grouped by pretraining run (the same runs, in one order, in every task)."""
    mine = runs[runs["init"] == init]
    seeds = sorted(set(mine["pretrain_seed"]))
    out = []
    for p, f in tasks:
        task = mine[(mine["protocol"] == p) & (mine["fraction"] == f)]
        out.append([task.loc[task["pretrain_seed"] == s, metric].to_numpy(float) for s in seeds])
    return out


def ranking(track_tables: list[Table], metric: str = "macro_f1", reference: str = REFERENCE_INIT) -> Ranking:
    """Average ranks, IQM and P(improvement) over a track's current tables."""
    current = [t for t in track_tables if t.current]
    track = current[0].key.track if current else (track_tables[0].key.track if track_tables else "")
    runs = pd.concat([t.runs for t in current], ignore_index=True) if current else pd.DataFrame(
        columns=["init", "protocol", "fraction", "pretrain_seed", "seed", metric, "init_kind"])
    tasks = sorted({(p, f) for p, f in zip(runs["protocol"], runs["fraction"], strict=True)})
    all_inits = init_order(runs) if len(runs) else []
    have = {(i, p, f) for i, p, f in zip(runs["init"], runs["protocol"], runs["fraction"], strict=True)}
    left_out = {i: [t for t in tasks if (i, *t) not in have] for i in all_inits}
    left_out = {i: missing for i, missing in left_out.items() if missing}
    # An aggregate over tasks resamples pretraining runs across all tasks: they must be the same runs.
    inits = [i for i in all_inits if i not in left_out and _same_runs_in_every_task(runs, i, tasks)]
    for i in all_inits:
        if i not in left_out and i not in inits:
            left_out[i] = []

    means = runs.groupby(["protocol", "fraction", "init"])[metric].mean()
    task_means = pd.DataFrame(
        [[means.get((p, f, i), np.nan) for i in inits] for p, f in tasks],
        index=pd.MultiIndex.from_tuples(tasks, names=["protocol", "fraction"]) if tasks else None,
        columns=inits, dtype=float)
    avg = stats.average_ranks(task_means) if len(inits) and len(tasks) else pd.Series(dtype=float)
    iqm = {i: stats.iqm_interval(nested_by_task(runs, i, tasks, metric)) for i in inits}
    improvement = {}
    if reference in inits:
        ref = nested_by_task(runs, reference, tasks, metric)
        improvement = {i: stats.probability_of_improvement_interval(nested_by_task(runs, i, tasks, metric), ref)
                       for i in inits if i != reference}
    return Ranking(track, tasks, inits, left_out, task_means, avg, iqm, improvement)


def _same_runs_in_every_task(runs: pd.DataFrame, init: str, tasks: list[tuple[str, float]]) -> bool:
    mine = runs[runs["init"] == init]
    sets = {frozenset(mine.loc[(mine["protocol"] == p) & (mine["fraction"] == f), "pretrain_seed"]) for p, f in tasks}
    return len(sets) == 1


def per_class_f1(runs: pd.DataFrame, init: str) -> pd.DataFrame:
    """Mean per-class test F1 over seeds: rows (protocol, fraction), columns class names."""
    df = runs[runs["init"] == init]
    classes = list(df["class_names"].iloc[0]) if len(df) else []
    rows = {}
    for (protocol, fraction), cell in df.groupby(["protocol", "fraction"], sort=True):
        per_seed = pd.DataFrame(list(cell["per_class_f1"]))
        rows[(protocol, fraction)] = per_seed.reindex(columns=classes).mean(axis=0)
    return pd.DataFrame(rows).T.reindex(columns=classes)
