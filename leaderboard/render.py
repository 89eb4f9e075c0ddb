"""LEADERBOARD.md from the runs: pure text, the same results give the same bytes.

The page is a list of section renderers (`SECTIONS`); each takes the `Page` and returns markdown
lines, so a later section (e.g. the variance-vs-size ablation) is one function appended there.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import pandas as pd
from tabulate import tabulate

from leaderboard import analysis, figures, stats
from leaderboard.load import Results, fraction_title

FIGURES_DIR = "figures"
NOT_RUN = "— (not run)"
TOO_FEW = "— (fewer than 2 seeds)"


@dataclass(frozen=True)
class Page:
    results: Results
    known_hashes: dict[str, str]

    @cached_property
    def tables(self) -> list[analysis.Table]:
        return analysis.tables(self.results.main, self.known_hashes)

    @cached_property
    def tracks(self) -> list[str]:
        return sorted(self.results.main["track"].unique())


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def signed_pct(x: float) -> str:
    return f"{100 * x:+.1f}"


def p_value(p: float) -> str:
    if math.isnan(p):
        return "p=n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def interval_text(iv: stats.Interval, fmt: Callable[[float], str] = pct, bold: bool = False) -> str:
    head = f"**{fmt(iv.mean)}**" if bold else fmt(iv.mean)
    return f"{head} [{fmt(iv.low)}, {fmt(iv.high)}]"


def markdown_table(rows: list[list[str]], headers: list[str], align: list[str] | None = None) -> list[str]:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True,
                    colalign=align).splitlines()


def init_label(runs: pd.DataFrame, init: str) -> str:
    row = runs[runs["init"] == init].iloc[0]
    if row["init_kind"] == "baseline":
        return f"{init} (baseline)"
    return f"{init} ({row['family']})" if isinstance(row["family"], str) and row["family"] else init


def anchor(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


# ---------------------------------------------------------------- per-table parts

def metric_table(table: analysis.Table, metric: str) -> list[str]:
    """Mean [95 % t-CI] (n) per init × label fraction; the best mean of each column in bold."""
    cells = analysis.summary(table, metric)
    best = {}
    for f in table.fractions:
        shown = [iv.mean for (i, ff), iv in cells.items() if ff == f and iv.n >= 2]
        best[f] = max(shown) if shown else None
    rows = []
    for init in table.inits:
        row = [init_label(table.runs, init)]
        for f in table.fractions:
            iv = cells.get((init, f))
            if iv is None:
                row.append(NOT_RUN)
            elif iv.n < 2:
                row.append(TOO_FEW)
            else:
                row.append(f"{interval_text(iv, bold=iv.mean == best[f])} (n={iv.n})")
        rows.append(row)
    return markdown_table(rows, ["init"] + [fraction_title(f) for f in table.fractions],
                          ["left"] + ["right"] * len(table.fractions))


def delta_table(table: analysis.Table, metric: str) -> list[str]:
    """Δ vs the reference init per cell, its CI, Holm-adjusted p and a win/loss marker."""
    ref = analysis.REFERENCE_INIT
    if ref not in set(table.runs["init"]):
        return [f"No `{ref}` results in this table, so no Δ vs {ref} init."]
    deltas = analysis.deltas(table, metric)
    rows = []
    tests: dict[str, set[int]] = {}
    for init in table.inits:
        if init == ref:
            continue
        row = [init_label(table.runs, init)]
        for f in table.fractions:
            d = deltas.get((init, f))
            if d is None:
                row.append(NOT_RUN)
            elif d.comparison.diff.n < 2:
                row.append("— (fewer than 2 matched seeds)")
            else:
                tests.setdefault(d.comparison.test, set()).add(d.comparison.diff.n)
                text = f"{interval_text(d.comparison.diff, signed_pct)} {p_value(d.p_holm)}"
                row.append(f"{text} {d.marker}".rstrip())
            # A cell that is missing for the reference shows up as no matched seeds above.
        rows.append(row)
    lines = markdown_table(rows, ["Δ vs " + ref] + [fraction_title(f) for f in table.fractions],
                           ["left"] + ["right"] * len(table.fractions))
    used = "; ".join(f"{_TEST_NAMES[t]} (n = {', '.join(map(str, sorted(ns)))} matched seeds)"
                     for t, ns in sorted(tests.items()))
    lines += ["", f"Δ = mean paired difference over matched seeds in points, with its 95 % t-interval; p is "
              f"two-sided, Holm-adjusted across the inits of each column; ▲/▼ = significantly better/worse "
              f"than {ref} (adjusted p < {stats.ALPHA}). Test used here: {used or 'none'} — the paired t-test "
              f"below {stats.WILCOXON_MIN_N} pairs, the Wilcoxon signed-rank test from "
              f"{stats.WILCOXON_MIN_N} pairs on (the fewest with which it can reach p < 0.05)."]
    return lines


_TEST_NAMES = {"t-test": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}


def table_section(page: Page, table: analysis.Table) -> list[str]:
    k = table.key
    title = f"### {k.protocol} (v{k.protocol_version}, hash `{k.protocol_hash[:12]}`)"
    lines = [title, ""]
    if not table.current:
        lines += [f"Results of an earlier version of `{k.protocol}`: shown apart, left out of the ranking.", ""]
    lines += ["Test macro-F1 (%), mean over seeds [95 % t-interval] (n = seeds); best mean per column in bold.", ""]
    lines += metric_table(table, "macro_f1") + [""]
    lines += delta_table(table, "macro_f1") + [""]
    lines += ["<details><summary>Balanced accuracy and accuracy</summary>", ""]
    for metric in ("balanced_accuracy", "accuracy"):
        lines += [f"Test {analysis.METRICS[metric]} (%):", ""] + metric_table(table, metric) + [""]
    lines += ["</details>", ""]
    if table.current:
        name = figures.f1_vs_fraction_name(k.track, k.protocol)
        lines += [f"![macro-F1 vs label fraction, {k.protocol}]({FIGURES_DIR}/{name})", ""]
    return lines


# ---------------------------------------------------------------- per-track parts

def ranking_section(track: str, ranking: analysis.Ranking) -> list[str]:
    ref = analysis.REFERENCE_INIT
    lines = ["### Across tasks", ""]
    if not ranking.tasks:
        return lines + ["No tasks to compare.", ""]
    task_names = ", ".join(f"{p} {fraction_title(f)}" for p, f in ranking.tasks)
    lines += [f"Tasks (blocks): {len(ranking.tasks)} — {task_names}. Each init is ranked on every task by its "
              f"mean test macro-F1 over seeds (rank 1 = best). IQM = interquartile mean of macro-F1 over all "
              f"seeds of all tasks, with a stratified-bootstrap 95 % interval ({stats.BOOTSTRAP_REPS} "
              f"resamples, seed {stats.BOOTSTRAP_SEED}); P(> {ref}) = probability that a run of the init beats "
              f"a run of {ref} on a random task (rliable's definitions).", ""]
    order = sorted(ranking.inits, key=lambda i: (ranking.average_ranks[i], i))
    rows = []
    for init in order:
        poi = ranking.improvement.get(init)
        rows.append([init, f"{ranking.average_ranks[init]:.2f}", interval_text(ranking.iqm[init]),
                     interval_text(poi, lambda x: f"{x:.2f}") if poi else "—"])
    lines += markdown_table(rows, ["init", "average rank", "IQM macro-F1 (%)", f"P(> {ref})"],
                            ["left", "right", "right", "right"]) + [""]
    for init, missing in sorted(ranking.left_out.items()):
        lines.append(f"- not ranked: `{init}` has no results for "
                     + ", ".join(f"{p} {fraction_title(f)}" for p, f in missing))
    if ranking.left_out:
        lines.append("")
    k, n = len(ranking.inits), len(ranking.tasks)
    if ranking.friedman is None:
        lines += [f"Friedman test not run: it needs at least 3 ranked inits and 2 tasks (here {k} and {n}).", ""]
        return lines
    fr = ranking.friedman
    lines.append(f"Friedman test: χ²({fr.k - 1}) = {fr.statistic:.2f}, {p_value(fr.p)} (k = {fr.k} inits, "
                 f"N = {fr.n_blocks} tasks).")
    if ranking.enough_blocks:
        lines += [f"Nemenyi critical difference at α = {stats.ALPHA}: {ranking.cd:.2f} ranks — inits whose "
                  f"average ranks differ by less are not significantly different (joined by a bar).", "",
                  f"![critical-difference diagram]({FIGURES_DIR}/{figures.cd_diagram_name(track)})", ""]
    else:
        lines += [f"No critical-difference diagram: {n} tasks are fewer than the {ranking.min_blocks} the Nemenyi "
                  f"test needs for {k} inits (with fewer, its critical difference exceeds {k - 1}, the largest "
                  f"possible gap in average rank, so no two inits could be told apart).", ""]
    return lines


def per_class_section(track: str, ranking: analysis.Ranking) -> list[str]:
    best = ranking.best
    if best is None:
        return []
    return ["### Per-class F1 of the best-ranked init", "",
            f"`{best}` (lowest average rank): mean test F1 per class over seeds, per task.", "",
            f"![per-class F1 of {best}]({FIGURES_DIR}/{figures.per_class_f1_name(track)})", ""]


def reproduce_command(runs: pd.DataFrame, init: str) -> str:
    row = runs[runs["init"] == init].iloc[0]
    cmd = f"make bench METHOD={init} PRESET={row['preset']}"
    if row["pretrain_dataset"] != "synthetic":
        cmd += f" DATA={row['pretrain_dataset']}"
    return f"`{cmd}`"


def track_section(page: Page, track: str) -> list[str]:
    runs = page.results.main[page.results.main["track"] == track]
    first = runs.iloc[0]
    lines = [f"## Track `{track}`", "",
             f"Pretraining data `{first['pretrain_dataset']}`, downstream data `{first['downstream_dataset']}`, "
             f"backbone `{first['backbone']}`, {first['resolution']} px, preset `{first['preset']}`; "
             f"{len(runs)} runs.", ""]
    track_tables = [t for t in page.tables if t.key.track == track]
    for table in track_tables:
        lines += table_section(page, table)
    ranking = analysis.ranking(track_tables)
    lines += ranking_section(track, ranking)
    lines += per_class_section(track, ranking)
    lines += ["### How to reproduce a row", ""]
    lines += markdown_table([[init, reproduce_command(runs, init)] for init in analysis.init_order(runs)],
                            ["init", "command"]) + [""]
    return lines


# ---------------------------------------------------------------- sections

def header_section(page: Page) -> list[str]:
    lines = ["# sslbench leaderboard", "",
             "Generated by `sslbench leaderboard` (`make leaderboard`) from the result files under "
             "`leaderboard/results/`; never edit it by hand — CI regenerates it and fails when this file "
             "differs. How to add results: CONTRIBUTING.md, \"Submitting results\".", ""]
    main, ablation = page.results.main, page.results.ablation
    if page.results.n_files == 0:
        return lines + ["**No results yet.** Produce some with `make bench METHOD=vicreg` (pretrains VICReg, "
                        "evaluates it and the `imagenet` and `random` baselines under every protocol, label "
                        "fraction and seed, and writes one JSON per run under `leaderboard/results/`), then "
                        "`make leaderboard`.", ""]
    lines.append(f"{len(main)} runs in {len(page.tracks)} track(s). Headline metric: macro-F1 on the test split; "
                 "tracks (dataset × backbone × resolution × preset) and protocol versions never mix.")
    if len(ablation):
        lines.append(f"{len(ablation)} ablation runs ({', '.join(sorted(ablation['protocol'].unique()))}) are "
                     "shown in their own section below.")
    lines.append("")
    if page.tracks:
        lines += ["Tracks: " + ", ".join(f"[`{t}`](#{anchor('Track ' + t)})" for t in page.tracks), ""]
    return lines


def tracks_section(page: Page) -> list[str]:
    lines = []
    for track in page.tracks:
        lines += track_section(page, track)
    return lines


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _distinct(values, fmt: Callable[[object], str] = str) -> str:
    counts = pd.Series(list(values)).value_counts()
    ordered = sorted(counts.items(), key=lambda kv: str(kv[0]))
    return "<br>".join(f"{fmt(v)} ({_runs(c)})" for v, c in ordered)


def provenance_section(page: Page) -> list[str]:
    runs = page.results.runs
    if runs.empty:
        return []
    lines = ["## Provenance", "",
             "What the runs above were produced with, per track (ablation runs included). GPU-hours = wall "
             "time of the runs that ran on a GPU.", ""]
    for track in sorted(runs["track"].unique()):
        df = runs[runs["track"] == track]
        protocols = df.drop_duplicates(["protocol", "protocol_hash"]).sort_values(["protocol", "protocol_version"])
        proto_text = "<br>".join(
            f"{r.protocol} v{r.protocol_version} `{r.protocol_hash[:12]}` "
            f"({_runs(int(((df['protocol'] == r.protocol) & (df['protocol_hash'] == r.protocol_hash)).sum()))})"
            for r in protocols.itertuples())
        gpu_hours = df.loc[df["gpu"], "wall_time_s"].sum() / 3600
        cpu_hours = df.loc[~df["gpu"], "wall_time_s"].sum() / 3600
        code = [f"{sha[:10]}{' (dirty)' if dirty else ''}" for sha, dirty in zip(df["git_sha"], df["git_dirty"],
                                                                                   strict=True)]
        rows = [["protocols", proto_text],
                ["downstream data fingerprints", _distinct(df["fp_downstream"], lambda v: f"`{str(v)[:12]}`")],
                ["pretraining data fingerprints",
                 _distinct(df["fp_pretrain"].dropna(), lambda v: f"`{str(v)[:12]}`") or "—"],
                ["code (git SHA)", _distinct(code, lambda v: f"`{v}`")],
                ["devices", _distinct(df["device"])],
                ["compute", f"{gpu_hours:.2f} GPU-hours, {cpu_hours:.2f} CPU-hours, {len(df)} runs"]]
        lines += [f"### `{track}`", ""] + markdown_table(rows, ["", "values (runs)"]) + [""]
    return lines


def ablation_section(page: Page) -> list[str]:
    from leaderboard import ablation

    return ablation.section(page)


# Order = order on the page.
SECTIONS: list[Callable[[Page], list[str]]] = [header_section, tracks_section, ablation_section,
                                               provenance_section]


def render(results: Results, known_hashes: dict[str, str]) -> str:
    page = Page(results, known_hashes)
    lines: list[str] = []
    for section in SECTIONS:
        lines += section(page)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
