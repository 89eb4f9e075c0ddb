"""LEADERBOARD.md from the runs: pure text, the same results give the same bytes.

The page is a list of section renderers (`SECTIONS`); each takes the `Page` and returns markdown
lines, so a later section (e.g. the variance-vs-size ablation) is one function appended there.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import pandas as pd
from tabulate import tabulate

from leaderboard import (
    ablation,
    analysis,
    continued_recipe,
    cross_scanner,
    figures,
    learning_curve,
    positives,
    stats,
)
from leaderboard.load import Results
from leaderboard.results import RANDOM_START, fraction_title, init_method, init_start, init_title

FIGURES_DIR = "figures"
NOT_RUN = "— (not run)"
REPOSITORY_RESULTS = "leaderboard/results"  # how the repository's own page names its results folder


@dataclass(frozen=True)
class Page:
    results: Results
    known_hashes: dict[str, str]
    # The results folder as the page names it (`leaderboard.results.results_label`).
    results_label: str = REPOSITORY_RESULTS

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
    title = init_title(init)  # a continued init as `simclr ← imagenet`
    return f"{title} ({row['family']})" if isinstance(row["family"], str) and row["family"] else title


def continued_inits(runs: pd.DataFrame) -> list[str]:
    """The continued inits (SSL from other weights than random ones) among `runs`, sorted."""
    return sorted(i for i in set(runs["init"]) if init_start(i) != RANDOM_START)


def reference_title(ref: str) -> str:
    return "the same method from random" if ref == analysis.SAME_METHOD else ref


def anchor(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(c for c in text.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


# ---------------------------------------------------------------- per-table parts

CONDITIONAL = "†"


def runs_text(cell: analysis.Cell) -> str:
    per = cell.runs // cell.pretrain_runs if cell.runs % cell.pretrain_runs == 0 else None
    return f"{cell.pretrain_runs}×{per}" if per is not None else f"{cell.pretrain_runs} runs, {cell.runs} jobs"


def column_best(table: analysis.Table, cells: dict[tuple[str, float], analysis.Cell]) -> dict[float, float | None]:
    """The best mean of each label-fraction column (shown in bold)."""
    best = {}
    for f in table.fractions:
        shown = [c.interval.mean for (i, ff), c in cells.items() if ff == f]
        best[f] = max(shown) if shown else None
    return best


def cell_text(cell: analysis.Cell | None, best: float | None) -> str:
    """One metric cell: mean [interval] (runs), bold when it is the column's best, † when conditional."""
    if cell is None:
        return NOT_RUN
    if math.isnan(cell.interval.low):
        return f"{pct(cell.interval.mean)} ({runs_text(cell)}, no interval)"
    mark = CONDITIONAL if cell.conditional else ""
    return f"{interval_text(cell.interval, bold=cell.interval.mean == best)}{mark} ({runs_text(cell)})"


def metric_table(table: analysis.Table, metric: str) -> list[str]:
    """Mean [95 % interval] (pretraining runs × seeds) per init × label fraction; the best mean of
    each column in bold; † marks an interval over the seeds of a single pretraining run."""
    cells = analysis.summary(table, metric)
    best = column_best(table, cells)
    rows = []
    for init in table.inits:
        row = [init_label(table.runs, init)]
        for f in table.fractions:
            row.append(cell_text(cells.get((init, f)), best[f]))
        rows.append(row)
    mark = score_mark(table.runs)
    return markdown_table(rows, ["init"] + [fraction_title(f) + mark for f in table.fractions],
                          ["left"] + ["right"] * len(table.fractions))


def delta_cell(d: analysis.Delta | None) -> str:
    if d is None:
        return NOT_RUN
    diff = d.comparison.diff
    if d.comparison.constant:
        return f"{signed_pct(diff.mean)} (no variation: every replicate differs by the same amount)"
    if diff.n < 2:
        return f"{signed_pct(diff.mean)} (one matched run)"
    if not d.tested:
        return f"{interval_text(diff, signed_pct)}{CONDITIONAL}"
    return f"{interval_text(diff, signed_pct)} {p_value(d.p_holm)} {d.marker}".rstrip()


def delta_table(table: analysis.Table, track_deltas: dict, ref: str = analysis.REFERENCE_INIT) -> list[str]:
    """Δ vs `ref` per cell, its interval, Holm-adjusted p and a win/loss marker."""
    if ref != analysis.SAME_METHOD and ref not in set(table.runs["init"]):
        return [f"No `{ref}` results in this table, so no Δ vs {ref} init."]
    rows = [[init_label(table.runs, init)]
            + [delta_cell(track_deltas.get((ref, table.key.protocol, init, f))) for f in table.fractions]
            for init in analysis.compared_inits(table, ref)]
    if not rows:
        return []
    return markdown_table(rows, ["Δ vs " + reference_title(ref)] + [fraction_title(f) for f in table.fractions],
                          ["left"] + ["right"] * len(table.fractions))


def table_section(page: Page, table: analysis.Table, track_deltas: dict) -> list[str]:
    k = table.key
    title = f"### {k.protocol} (v{k.protocol_version}, hash `{k.protocol_hash[:12]}`)"
    lines = [title, ""]
    if not table.current:
        lines += [f"Results of an earlier version of `{k.protocol}`: shown apart, left out of the tests and the "
                  "summary.", ""]
    lines += ["Test macro-F1 (%): mean [95 % interval] (pretraining runs × downstream seeds); best mean per "
              "column in bold. Statistics: see [how to read this track](#" + anchor(f"How to read track {k.track}")
              + ").", ""]
    lines += metric_table(table, "macro_f1") + [""] + subject_note(table.runs)
    if table.current:
        lines += delta_table(table, track_deltas) + [""]
        signal = delta_table(table, track_deltas, analysis.SIGNAL_INIT)
        if signal and analysis.SIGNAL_INIT in set(table.runs["init"]):
            lines += [f"Did pretraining help at all? Δ of each SSL method vs `{analysis.SIGNAL_INIT}` (the "
                      "untrained network of the same pretraining seed), paired and tested as above.", ""]
            lines += signal + [""]
        lines += continued_delta_lines(table, track_deltas, recipes_tried(page, table.key.track))
    lines += ["<details><summary>Balanced accuracy and accuracy</summary>", ""]
    for metric in ("balanced_accuracy", "accuracy"):
        lines += [f"Test {analysis.METRICS[metric]} (%):", ""] + metric_table(table, metric) + [""]
    lines += ["</details>", ""]
    if table.current:
        name = figures.f1_vs_fraction_name(k.track, k.protocol)
        lines += [f"![macro-F1 vs label fraction, {k.protocol}]({FIGURES_DIR}/{name})", ""]
    return lines


def recipes_tried(page: Page, track: str) -> int:
    """How many recipes the continued-recipe ablation tried on `track` (0: it has not run there)."""
    runs = continued_recipe.expand(page.results.ablation)
    return int(runs.loc[runs["track"] == track, "recipe_name"].nunique())


def recipe_text(table: analysis.Table, tried: int) -> str:
    """The recipe the table's continued rows ran with, and how many were tried for them."""
    rows = table.runs[table.runs["init"].isin(continued_inits(table.runs)) & table.runs["recipe"].notna()]
    used: dict[str, set[str]] = {}  # recipe → the rows that ran with it
    for init, recipe in zip(rows["init"], rows["recipe"], strict=True):
        used.setdefault(continued_recipe.knobs_text(recipe), set()).add(f"`{init_title(init)}`")
    if len(used) > 1:
        text = "Their recipes: " + "; ".join(f"{k} ({', '.join(sorted(v))})" for k, v in sorted(used.items())) + ". "
    else:
        text = f"Their recipe: {next(iter(used)) if used else 'not recorded'}. "
    if tried:
        return text + (f"{tried} recipe{'s' if tried != 1 else ''} were tried for every continued row of this track and "
                       "one chosen for each method on the validation split (section \"Continued pretraining: the "
                       "recipe, chosen on validation\").")
    return text + "No recipe was compared on this track (`sslbench ablation continued-recipe` does)."


def continued_delta_lines(table: analysis.Table, track_deltas: dict, tried: int = 0) -> list[str]:
    """For the continued rows of a table (`M ← imagenet`): what each comparison means, the recipe they ran with
    and how many were tried (`tried`), and the Δ vs the same method from random weights. Nothing when the
    table has none."""
    continued = continued_inits(table.runs)
    if not continued:
        return []
    names = ", ".join(f"`{init_title(i)}`" for i in continued)
    lines = [f"Continued from ImageNet weights ({names}): Δ vs `{analysis.REFERENCE_INIT}` above is what SSL on "
             "these videos adds to ImageNet's weights; below, Δ vs the same method from random weights is what "
             "ImageNet's weights add to SSL. Both are paired by pretraining seed and downstream seed and tested as "
             "above, in the same Holm family. " + recipe_text(table, tried), ""]
    same = delta_table(table, track_deltas, analysis.SAME_METHOD)
    if not same:
        missing = ", ".join(f"`{init_method(i)}`" for i in continued)
        return lines + [f"No results of {missing} from random weights in this table, so no Δ vs the same method "
                        "from random.", ""]
    return lines + same + [""]


# ---------------------------------------------------------------- data card

NOT_DISJOINT = "‡"
NOT_RECORDED = "not recorded"
ROLE_TITLES = {"pretrain": "pretraining", "downstream": "downstream"}


def _count(n: int) -> str:
    return f"{int(n):,}"


def without_subject_ids(runs: pd.DataFrame) -> bool:
    """Whether the downstream data of any of `runs` has files without a subject id (so its splits are
    not subject-disjoint), as the results' data cards record it."""
    return any(isinstance(c, dict) and c.get("clips_without_subject") for c in runs["data_downstream"])


def score_mark(runs: pd.DataFrame) -> str:
    """The mark beside the scores of runs whose splits are not subject-disjoint ("" for the others)."""
    return NOT_DISJOINT if without_subject_ids(runs) else ""


def subject_note(runs: pd.DataFrame) -> list[str]:
    """The footnote of `score_mark` (no lines when the splits are subject-disjoint or not recorded)."""
    if not without_subject_ids(runs):
        return []
    specs = sorted({c["spec"] for c in runs["data_downstream"] if isinstance(c, dict) and c.get("clips_without_subject")})
    return [f"{NOT_DISJOINT} **Splits not subject-disjoint**: the downstream data ({', '.join(f'`{s}`' for s in specs)}) "
            "has files without a subject id, so each is its own subject and images of one patient may be in both "
            "train and test; these scores may be optimistic (see the data card).", ""]


def role_cards(runs: pd.DataFrame, role: str) -> list[tuple[str, dict | None, list]]:
    """(fingerprint, data card or None, skipped-file counts recorded) per distinct fingerprint of `role`
    among `runs`; the most complete card where results differ (older ones record less)."""
    out = []
    for fp, g in runs.groupby(f"fp_{role}", sort=True):
        cards = [c for c in g[f"data_{role}"] if isinstance(c, dict)]
        card = max(cards, key=lambda c: ("clips_without_subject" in c, len(c)), default=None)
        skipped = sorted({int(v) for v in g[f"skipped_{role}"] if not pd.isna(v)})
        out.append((str(fp), card, skipped))
    return out


SPLIT_ORDER = ("train", "val", "test")


def ordered_classes(card: dict, class_names) -> list[tuple[str, dict]]:
    """(class, labelled frames per split) of a card, in the order of the track's `class_names` (result
    files store them sorted by name); classes the track does not name come last, by name."""
    classes = card.get("classes") or {}
    order = {name: k for k, name in enumerate(class_names)}
    return sorted(classes.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))


def _classes_text(card: dict, class_names) -> str:
    classes = ordered_classes(card, class_names)
    if not classes:
        return "unlabelled"
    return ", ".join(f"{name} {_count(sum(per.values()))}" for name, per in classes)


def _subjects_text(card: dict) -> str:
    splits = card.get("splits") or {}
    per = ", ".join(f"{s} {_count(splits[s]['subjects'])}" for s in SPLIT_ORDER if s in splits)
    return _count(card["subjects"]) + (f" ({per})" if per else "")


def _subject_ids_text(card: dict, role: str) -> str:
    missing = card.get("clips_without_subject")
    if missing is None:
        return NOT_RECORDED
    if missing == 0:
        return "given for every video/image"
    mark = f" {NOT_DISJOINT}" if role == "downstream" else ""
    return f"**none for {_count(missing)} of {_count(card.get('clips', 0))} videos/images** (each its own subject){mark}"


CARD_ROWS = ["source (kind)", "frames", "videos", "subjects", "subject ids", "classes (labelled frames)",
             "skipped files"]


def card_column(role: str, card: dict | None, skipped: list, spec: str, class_names) -> list[str]:
    """The cells of one data card column, in the order of `CARD_ROWS`; `spec`: the track's dataset of
    the role, shown when no result records a card."""
    skipped_text = ", ".join(_count(n) for n in skipped) if skipped else NOT_RECORDED
    if card is None:
        return [f"`{spec}`"] + [NOT_RECORDED] * (len(CARD_ROWS) - 2) + [skipped_text]
    return [f"`{card['spec'] or spec}` ({card['kind']})", _count(card["frames"]), _count(card["videos"]),
            _subjects_text(card), _subject_ids_text(card, role), _classes_text(card, class_names), skipped_text]


def class_split_table(card: dict, class_names) -> list[str]:
    """Labelled frames per class and split of one downstream card."""
    splits = [s for s in SPLIT_ORDER if s in (card.get("splits") or {})]
    rows = [[name] + [_count(per.get(s, 0)) for s in splits] + [_count(sum(per.values()))]
            for name, per in ordered_classes(card, class_names)]
    if not rows:
        return []
    return markdown_table(rows, ["class"] + splits + ["all"], ["left"] + ["right"] * (len(splits) + 1))


def _setting(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def settings_lines(columns: list[tuple[str, str, dict | None, list]]) -> list[str]:
    """One line per distinct set of source settings among the card columns (role, fingerprint, card,
    skipped), naming the columns that share it; none for cards that do not record settings."""
    groups: dict[str, list[str]] = {}
    for role, fp, card, _ in columns:
        settings = (card or {}).get("settings")
        if settings:
            text = ", ".join(f"`{k}={_setting(v)}`" for k, v in sorted(settings.items()))
            groups.setdefault(text, []).append(f"{ROLE_TITLES[role]} `{fp[:12]}`")
    return [line for text, names in groups.items()
            for line in (f"Source settings of {' and '.join(names)}: {text}.", "")]


def data_card_section(runs: pd.DataFrame) -> list[str]:
    """### Data: the track's pretraining and downstream data, one column per role and fingerprint, from
    the data cards the results record ("not recorded" for results written before they did)."""
    columns = [(role, fp, card, skipped) for role in ROLE_TITLES
               for fp, card, skipped in role_cards(runs.dropna(subset=[f"fp_{role}"]), role)]
    lines = ["### Data", "",
             "What the runs of this track were trained and scored on, as each result records it: the frame caches "
             "of the pretraining pool (of the SSL and `random` inits) and of the downstream set; subjects of the "
             "downstream data per split (train/val/test are subject-disjoint when every file has a subject id).", ""]
    heads = [f"{ROLE_TITLES[role]} `{fp[:12]}`" for role, fp, _, _ in columns]
    class_names = runs["class_names"].iloc[0]
    cells = [card_column(role, card, skipped, str(runs[f"{role}_dataset"].iloc[0]), class_names)
             for role, _, card, skipped in columns]
    rows = [[title] + [col[i] for col in cells] for i, title in enumerate(CARD_ROWS)]
    lines += markdown_table(rows, ["data (fingerprint)"] + heads) + [""]
    lines += settings_lines(columns)
    for role, fp, card, _ in columns:
        table = class_split_table(card, class_names) if role == "downstream" and card is not None else []
        if table:
            lines += [f"Labelled downstream frames per class and split (`{fp[:12]}`):", ""] + table + [""]
    return lines + subject_note(runs)


# ---------------------------------------------------------------- per-track parts

def statistics_note(track: str, runs: pd.DataFrame, track_deltas: dict) -> list[str]:
    """What varies across seeds, the test, its family and how pretraining variance enters."""
    ref = analysis.REFERENCE_INIT
    n_pre = runs.groupby("init")["pretrain_seed"].nunique()
    ssl = runs.loc[runs["init_kind"] == "ssl", "init"].unique()
    single = sorted(i for i in n_pre.index if n_pre[i] < 2)
    family = analysis.family_size(track_deltas)
    lines = [f"### How to read track {track}", "",
             "- **What varies.** A pretraining seed sets an SSL run's initial weights, its batches and its "
             "augmentations; the `random` baseline of that seed is a network drawn from its own stream of the "
             "seed, with BatchNorm statistics estimated on the same pretraining pool (no gradient step); "
             f"`{ref}` has the same weights for every seed. A downstream seed, within a pretraining seed, sets "
             "the label subset (drawn from both seeds, the same for every init), and for fine-tuning the data "
             f"order and augmentation. {deterministic_text(runs)}",
             "- **Intervals.** The pretraining runs are the independent replicates: a cell's 95 % interval is the "
             "Student-t interval over the means of its pretraining runs (each averaged over its downstream "
             "seeds), intersected with [0, 100]. Downstream seeds of one checkpoint are not independent draws "
             "of a method, so they are never counted as replicates.",
             f"- **Tests.** Δ vs {ref} (every init) and Δ vs {analysis.SIGNAL_INIT} (the SSL methods) are paired "
             "job by job (same pretraining seed, same label subset); the test is the paired t-test over the "
             "pretraining runs' mean differences (one test at every n). A Δ that is the same in every run says "
             "\"no variation\" instead of a p-value. p is Holm-adjusted over the family of every test against "
             f"{ref} or {analysis.SIGNAL_INIT} in this track ({family} tests: all protocols, fractions and "
             "inits), and ▲/▼ mark adjusted p < 0.05.",
             "- **No rank test.** The tasks of a track (protocol × label fraction) share one dataset and the same "
             "checkpoints, so they are not the independent blocks a Friedman/Nemenyi test assumes; the average ranks "
             "of \"Across tasks\" are descriptive."]
    continued = continued_inits(runs)
    if continued:
        lines.append(f"- **Continued rows** ({', '.join(f'`{init_title(i)}`' for i in continued)}): SSL pretraining "
                     "started from the backbone's ImageNet weights instead of random ones, with the track's continued "
                     "recipe (each result's `init.pretrain.continued`: the start, the weights' source and the recipe's "
                     f"knobs). They are tested against {ref} (what SSL on the videos adds) and against the same method "
                     f"from random weights (what ImageNet adds), not against {analysis.SIGNAL_INIT}; both tests are "
                     "in the family above.")
    if single:
        which = ", ".join(f"`{i}`" for i in single)
        lines.append(f"- **{CONDITIONAL} one pretraining run** ({which}): the interval is over the downstream seeds "
                     "of that single run, so it leaves out the variation between pretraining runs, and no test is "
                     "made.")
    if len(ssl) and not single:
        lines.append("- Every SSL method here has at least 2 pretraining runs.")
    return lines + [""]


def ranking_section(track: str, ranking: analysis.Ranking) -> list[str]:
    ref = analysis.REFERENCE_INIT
    lines = ["### Across tasks", ""]
    if not ranking.tasks:
        return lines + ["No tasks to compare.", ""]
    task_names = ", ".join(f"{p} {fraction_title(f)}" for p, f in ranking.tasks)
    lines += [f"Tasks: {len(ranking.tasks)} — {task_names}. Average rank of each init's mean test macro-F1 over the "
              f"tasks (rank 1 = best; descriptive, no test). IQM = interquartile mean of macro-F1 over all runs of "
              f"all tasks; P(> {ref}) = probability that a run of the init beats a run of {ref} on a random task "
              f"(rliable's definitions). Their 95 % intervals come from a hierarchical bootstrap "
              f"({stats.BOOTSTRAP_REPS} resamples, seed {stats.BOOTSTRAP_SEED}): pretraining runs are resampled, "
              "then the downstream runs within each.", ""]
    order = sorted(ranking.inits, key=lambda i: (ranking.average_ranks[i], i))
    rows = []
    for init in order:
        poi = ranking.improvement.get(init)
        rows.append([init, f"{ranking.average_ranks[init]:.2f}", interval_text(ranking.iqm[init]),
                     interval_text(poi, lambda x: f"{x:.2f}") if poi else "—"])
    lines += markdown_table(rows, ["init", "average rank", "IQM macro-F1 (%)", f"P(> {ref})"],
                            ["left", "right", "right", "right"]) + [""]
    for init, missing in sorted(ranking.left_out.items()):
        if missing:
            lines.append(f"- not summarised: `{init}` has no results for "
                         + ", ".join(f"{p} {fraction_title(f)}" for p, f in missing))
        else:
            lines.append(f"- not summarised: `{init}` has different pretraining runs in different tasks")
    if ranking.left_out:
        lines.append("")
    return lines


# A pretraining run whose pool k-NN macro-F1 rose by less than this (in points) separates the planes no
# better than the network it started from. Measured on the cpu track's pool: SimCLR +19 to +32, VICReg +7,
# and BYOL −0.4 with its probe at the random network's level. The check reads what every checkpoint
# recorded, so it needs the pool's labels (the simulator has them; unlabelled video shows "—").
MIN_KNN_GAIN = 2.0


def knn_gain(diagnostics: dict) -> float | None:
    """How many points the pretraining run raised the pool's k-NN macro-F1; None without the pool's labels."""
    before, after = diagnostics["before"].get("knn_macro_f1"), diagnostics["after"].get("knn_macro_f1")
    return None if before is None or after is None else 100 * (after - before)


def knn_note(diagnostics: dict) -> str | None:
    """A note when a pretraining run did not lift the pool's k-NN macro-F1; None otherwise or without labels."""
    gain = knn_gain(diagnostics)
    if gain is None:
        return None
    if gain >= MIN_KNN_GAIN:
        return None
    return (f"its features separate the pool's planes no better than before pretraining: k-NN macro-F1 "
            f"{gain:+.1f} points (< {MIN_KNN_GAIN:g})")


def diagnostics_section(runs: pd.DataFrame) -> list[str]:
    """Did every pretraining run learn? The numbers each checkpoint recorded (benchmark.pretrain.diagnostics)."""
    made = runs[runs["diagnostics"].notna()].drop_duplicates(["init", "pretrain_seed"])
    if made.empty:
        return []
    lines = ["### Did pretraining learn?", "",
             "Recorded with each checkpoint, on up to 1,024 frames of the pretraining pool: the relative change of "
             "the encoder's weights, the effective rank of its features and the std of its L2-normalised "
             "features × √D (about 1 = spread out, 0 = collapsed), and a k-NN macro-F1 of the pool's own labels "
             "across subject-disjoint halves (labels never used in pretraining), before → after. An SSL run's "
             "\"before\" is its own initial network; `random` is another untrained network of the same seed (its "
             "own draw), so the two \"before\" values differ a little. A run whose k-NN macro-F1 rose by less than "
             f"{MIN_KNN_GAIN:g} points is noted: its encoder may have moved, but not towards the planes.", ""]
    rows = []
    for r in made.sort_values(["init_kind", "init", "pretrain_seed"], ascending=[False, True, True]).itertuples():
        d = r.diagnostics
        b, a = d["before"], d["after"]
        knn = "—" if a.get("knn_macro_f1") is None else f"{pct(b['knn_macro_f1'])} → {pct(a['knn_macro_f1'])}"
        note, gain = knn_note(d), knn_gain(d)
        # A checkpoint's problems are judged when it is made. Records made before the engine's rule learned that a
        # small weight change can move the features (a run continued from ImageNet at a tenth of the rate with
        # its BatchNorm kept: 0.8 % while its pool k-NN rose 9 points, or fell 25) still say "did not move"; the
        # page applies the rule of today (benchmark.pretrain.diagnostics.problems) to every record.
        found = [p for p in d.get("problems") or []
                 if not (p.startswith("the encoder did not move") and gain is not None and abs(gain) >= MIN_KNN_GAIN)]
        if r.init_kind != "baseline" and note:
            found.append(note)
        notes = "; ".join(found) or "—"
        rows.append([init_title(r.init), str(r.pretrain_seed), f"{d['encoder_change']:.3g}",
                     f"{b['effective_rank']:.1f} → {a['effective_rank']:.1f}",
                     f"{b['embedding_std']:.2f} → {a['embedding_std']:.2f}", knn, notes])
    lines += markdown_table(rows, ["init", "pretraining seed", "encoder change", "effective rank", "embedding std",
                                   "k-NN macro-F1 (%)", "problems"],
                            ["left", "right", "right", "right", "right", "right", "left"])
    return lines + [""]


def per_class_section(track: str, ranking: analysis.Ranking) -> list[str]:
    best = ranking.best
    if best is None:
        return []
    return ["### Per-class F1 of the best-ranked init", "",
            f"`{best}` (lowest average rank): mean test F1 per class over runs, per task.", "",
            f"![per-class F1 of {best}]({FIGURES_DIR}/{figures.per_class_f1_name(track)})", ""]


def preset_pretrain_spec(preset: str) -> str | None:
    """The `[data.pretrain] spec` a built-in preset file names (read as data: the leaderboard does not
    import the protocols package); None for a preset that is not a built-in file."""
    import tomllib
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "protocols" / "presets" / f"{preset}.toml"
    try:
        return tomllib.loads(path.read_text())["data"]["pretrain"]["spec"]
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return None


def reproduce_command(runs: pd.DataFrame, init: str) -> str:
    row = runs[runs["init"] == init].iloc[0]
    start = init_start(init)
    cmd = f"make bench METHOD={init_method(init)} PRESET={row['preset']}"
    if start != RANDOM_START:
        cmd += f" START={start}"
    # DATA= only where the runs pretrained on other data than their preset's own: given as DATA=, a spec
    # would drop the preset's options for it (stride, subject pattern) and build another pool.
    if row["pretrain_dataset"] not in ("synthetic", preset_pretrain_spec(str(row["preset"]))):
        cmd += f" DATA={row['pretrain_dataset']}"
    return f"`{cmd}`"


def signal_delta_text(table: analysis.Table, track_deltas: dict, init: str, fraction: float) -> str:
    """`init`'s Δ vs random init: the track's test where it makes one (SSL from random weights); for a baseline
    or a continued init, which the track does not test against random, the paired interval alone."""
    signal = analysis.SIGNAL_INIT
    key = (signal, table.key.protocol, init, fraction)
    if key in track_deltas:
        return delta_cell(track_deltas[key])
    if init == signal or signal not in set(table.runs["init"]):
        return "—"
    out = analysis.paired_delta(analysis.cell_runs(table.runs, init, fraction),
                                analysis.cell_runs(table.runs, signal, fraction), "macro_f1")
    if out is None:
        return "—"
    return f"{interval_text(out[0].diff, signed_pct)} (not tested)"


def answer_section(track_tables: list[analysis.Table], track_deltas: dict) -> list[str]:
    """The track's answer in a few lines, before its data card and tables: per protocol and label fraction the
    init with the best mean test macro-F1, its Δ vs imagenet and vs random, and the best SSL init's Δ vs
    imagenet; then whether any SSL init beats imagenet (Holm-corrected, as everywhere on the track)."""
    ref, signal = analysis.REFERENCE_INIT, analysis.SIGNAL_INIT
    rows, wins, compared = [], [], 0
    for table in sorted((t for t in track_tables if t.current), key=lambda t: t.key.protocol):
        cells = analysis.summary(table, "macro_f1")
        ssl = set(table.runs.loc[table.runs["init_kind"] == "ssl", "init"])
        for fraction in table.fractions:
            here = {init: cell for (init, f), cell in cells.items() if f == fraction}
            best = max(here, key=lambda i: (here[i].interval.mean, i))
            mine = [i for i in here if i in ssl]
            best_ssl = max(mine, key=lambda i: (here[i].interval.mean, i)) if mine else None
            won = [i for i in mine if (d := track_deltas.get((ref, table.key.protocol, i, fraction)))
                   and d.marker == "▲"]
            compared += bool(mine)
            wins += [(table.key.protocol, fraction, i, track_deltas[(ref, table.key.protocol, i, fraction)])
                     for i in won]
            rows.append([table.key.protocol, fraction_title(fraction),
                         f"{init_title(best)} {pct(here[best].interval.mean)}",
                         "— (the reference)" if best == ref else delta_cell(track_deltas.get((ref, table.key.protocol,
                                                                                             best, fraction))),
                         signal_delta_text(table, track_deltas, best, fraction),
                         "—" if best_ssl is None else "(the best init)" if best_ssl == best else
                         f"{init_title(best_ssl)}: " + delta_cell(track_deltas.get((ref, table.key.protocol, best_ssl,
                                                                                    fraction))),
                         ", ".join(init_title(i) for i in won) or "no"])
    if not rows:
        return []
    lines = ["### The answer", "",
             "Per protocol and label fraction: the init with the best mean test macro-F1 (%), its Δ vs "
             f"{ref} and vs {signal} init, and the best SSL init's Δ vs {ref} (paired over the pretraining "
             "runs: 95 % interval and Holm-corrected p over every test of the track, as in the tables below; "
             "▲/▼ significant).", ""]
    lines += markdown_table(rows, ["protocol", "labels", "best init", f"Δ vs {ref}", f"Δ vs {signal}",
                                   f"best SSL init, Δ vs {ref}", f"SSL beats {ref}"],
                            ["left", "right", "left", "right", "right", "left", "left"]) + [""]
    if wins:
        lines.append(f"**An SSL init beats {ref}** where the table says so: "
                     + "; ".join(f"{init_title(i)} at {fraction_title(f)} ({p}) {delta_cell(d)}"
                                 for p, f, i, d in wins) + ".")
    elif compared:
        lines.append(f"**No SSL init beats {ref}** at any label fraction under any protocol of this track "
                     f"(Holm-corrected p < {stats.ALPHA:g}).")
    else:
        lines.append("No SSL init on this track yet: only the baselines are compared.")
    return lines + [""]


def track_section(page: Page, track: str) -> list[str]:
    runs = page.results.main[page.results.main["track"] == track]
    first = runs.iloc[0]
    lines = [f"## Track `{track}`", "",
             f"Pretraining data `{first['pretrain_dataset']}`, downstream data `{first['downstream_dataset']}`, "
             f"backbone `{first['backbone']}`, {first['resolution']} px, preset `{first['preset']}`; "
             f"{len(runs)} runs.", ""]
    track_tables = [t for t in page.tables if t.key.track == track]
    track_deltas = analysis.deltas(track_tables, "macro_f1")
    lines += answer_section(track_tables, track_deltas)
    lines += data_card_section(runs)
    for table in track_tables:
        lines += table_section(page, table, track_deltas)
    ranking = analysis.ranking(track_tables)
    lines += ranking_section(track, ranking)
    lines += diagnostics_section(runs)
    lines += per_class_section(track, ranking)
    lines += statistics_note(track, runs, track_deltas)
    lines += ["### How to reproduce a row", ""]
    lines += markdown_table([[init_title(init), reproduce_command(runs, init)] for init in analysis.init_order(runs)],
                            ["init", "command"]) + [""]
    return lines


# ---------------------------------------------------------------- sections

def header_section(page: Page) -> list[str]:
    folder = page.results_label
    if folder == REPOSITORY_RESULTS:
        lines = ["# sslbench leaderboard", "",
                 "Generated by `sslbench leaderboard` (`make leaderboard`) from the result files under "
                 f"`{folder}/`; never edit it by hand — CI regenerates it and fails when this file "
                 "differs. How to add results: CONTRIBUTING.md, \"Submitting results\".", ""]
    else:
        lines = ["# sslbench leaderboard", "",
                 f"Generated by `sslbench leaderboard` from the result files under `{folder}/`; never edit it "
                 "by hand: regenerate it after new results (`--check` says whether it still matches them).", ""]
    main, ablation = page.results.main, page.results.ablation
    if page.results.n_files == 0:
        return lines + ["**No results yet.** Produce some with `make bench METHOD=vicreg` (pretrains VICReg, "
                        "evaluates it and the `imagenet` and `random` baselines under every protocol, label "
                        f"fraction and seed, and writes one JSON per run under `{folder}/`), then "
                        "`make leaderboard`.", ""]
    lines.append(f"{len(main)} runs in {len(page.tracks)} track(s). Headline metric: macro-F1 on the test split; "
                 "tracks (dataset × backbone × resolution × preset) and protocol versions never mix.")
    if len(ablation):
        lines.append(f"{len(ablation)} ablation runs ({', '.join(sorted(ablation['protocol'].unique()))}) are "
                     "shown in their own section below.")
    if len(page.results.cross_scanner):
        lines.append(f"{len(page.results.cross_scanner)} cross-scanner runs are shown in their own section below.")
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


def deterministic_text(runs: pd.DataFrame) -> str:
    """Which protocols of the track run once at 100 % labels (nothing random enters them given the subset)."""
    if "knn" in set(runs["protocol"]):
        return ("The linear probe and the k-NN are deterministic given their subset, so at 100 % labels, where "
                "every seed has the same subset, each runs once per pretraining seed.")
    return ("The linear probe is deterministic given its subset, so at 100 % labels, where every seed has the "
            "same subset, it runs once per pretraining seed.")


def solver_text(df: pd.DataFrame) -> str:
    """How many L-BFGS fits (probes, and the probe heads of fine-tuning) stopped at max_iter."""
    fits = []
    for train in df["train"]:
        for report in (train.get("solver"), (train.get("head_init") or {}).get("solver")):
            if isinstance(report, dict) and "converged" in report:
                fits.append(bool(report["converged"]))
    if not fits:
        return "—"
    stopped = fits.count(False)
    return (f"{len(fits)} L-BFGS fits, all converged" if stopped == 0 else
            f"{len(fits)} L-BFGS fits, {stopped} stopped at max_iter before converging")


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
                ["machines (CPU, instruction set, BLAS, threads)", _distinct(df["machine"])],
                ["compute", f"{gpu_hours:.2f} GPU-hours, {cpu_hours:.2f} CPU-hours, {len(df)} runs"],
                ["solver", solver_text(df)]]
        lines += [f"### `{track}`", ""] + markdown_table(rows, ["", "values (runs)"]) + [""]
        if df["machine"].nunique() > 1:
            lines += [f"The runs of this track come from {df['machine'].nunique()} kinds of machine (or from "
                      "results that did not record theirs). A CPU run reproduces to the bit only on the kind of "
                      "machine that made it; elsewhere the same command gives other checkpoints and other numbers "
                      "within the spread between pretraining runs.", ""]
    return lines


def ablation_section(page: Page) -> list[str]:
    """Markdown lines of the ablation section (empty when there are no ablation runs)."""
    runs = ablation.expand(page.results.ablation)
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
        lines += [f"### `{track}`", "", f"![variance vs size]({FIGURES_DIR}/{figures.variance_vs_size_name(track)})", ""]
        groups = list(tr.groupby(["init", "eval_protocol"], sort=True))
        n_fits = len(groups)
        level = 1 - (1 - stats.CONFIDENCE) / n_fits  # Bonferroni across the fits of this track
        for (init, ev), g in groups:
            hashes = sorted(g["protocol_hash"].unique())
            means = ablation.subset_means(g)
            fraction = g["fraction"].iloc[0]
            lines += [f"#### {init_title(init)}, {ev} at {100 * fraction:g} % labels "
                      f"(protocol `{hashes[0][:12]}`{' + older versions' if len(hashes) > 1 else ''})", ""]
            rows = [[m.axis, str(m.level), str(m.subjects), str(m.videos), str(m.frames),
                     f"{interval_text(m.interval)}{'†' if m.cell.conditional else ''} ({runs_text(m.cell)})"
                     if m.interval.n >= 2 else f"{100 * m.interval.mean:.1f} ({runs_text(m.cell)}, no interval)"]
                    for m in means.itertuples()]
            lines += markdown_table(rows, ["axis", "level", "subjects", "videos", "frames", "macro-F1"],
                                    ["left", "right", "right", "right", "right", "left"]) + [""]
            lines += [ablation.verdict(ablation.fit_slopes(ablation.run_points(g), confidence=level), n_fits), ""]
    return lines


def learning_curve_section(page: Page) -> list[str]:
    """Markdown lines of the learning-curve section (empty when there are no learning-curve runs)."""
    runs = learning_curve.expand(page.results.ablation)
    if runs.empty:
        return []
    lines = ["## Learning curves: score against pretraining budget", "",
             "How far does each method get with more pretraining? Every budget of `protocols/learning_curve.toml` "
             "is a pretraining run of its own on the whole pool, with the track's pretraining settings and its own "
             "schedule (warm-up and cosine decay are fractions of the run, so a run of 300 steps is not the first "
             "half of one of 600; a budget equal to the preset's is the main grid's checkpoint), evaluated at the "
             "protocol's label fraction. Test macro-F1 (%), mean [95 % interval over the pretraining runs] (runs × "
             "seeds; † = one pretraining run, the interval then covers its downstream seeds only); validation "
             "macro-F1 is the mean. Encoder change, effective rank and the pool's k-NN macro-F1 (before → after) are "
             "what the checkpoints recorded (\"Did pretraining learn?\"), averaged over a budget's pretraining runs. "
             "No statistical test is made here: the intervals describe the scatter, and \"flattened\" only compares "
             "a curve's last gain with the half-width of its interval at the largest budget.", ""]
    for track in sorted(runs["track"].unique()):
        tr = runs[runs["track"] == track]
        lines += [f"### `{track}`", "", f"![learning curves]({FIGURES_DIR}/{figures.learning_curve_name(track)})", ""]
        evals = sorted(tr["eval_protocol"].unique())
        fraction = fraction_title(tr["fraction"].iloc[0])
        for ev in evals:
            lines += [reference_text(page.results.main, tr, ev, fraction), ""]
        lines += budget_table(tr, evals) + [""]
        lines += hparams_lines(tr)
        lines += knn_rise_section(tr)
        lines += [flattening_text(learning_curve.trends(tr, ev), ev, fraction) for ev in evals] + [""]
        first = tr.iloc[0]
        data = data_flags(first)
        lines += [f"Reproduce: `sslbench ablation learning-curve --method {','.join(sorted(tr['init'].unique()))} "
                  f"--preset {first['preset']}{data}`.", ""]
    return lines


def data_flags(run: pd.Series) -> str:
    """The --dataset/--downstream flags that reproduce a run's data (none for the built-in simulator)."""
    return "".join(f" --{flag} {run[col]}" for flag, col in (("dataset", "pretrain_dataset"),
                                                             ("downstream", "downstream_dataset"))
                   if run[col] != "synthetic")


def positives_section(page: Page) -> list[str]:
    """Markdown lines of the positives section (empty when there are no positives runs)."""
    runs = positives.expand(page.results.ablation)
    if runs.empty:
        return []
    lines = ["## Positives: does the video's time help?", "",
             "Each method of `protocols/positives.toml` is pretrained with each way of drawing its positive pairs, "
             "the rest of the run as the track's preset sets it: `same_frame` (two augmentations of one frame, the "
             "reference study's) or `temporal:K` (two frames of one clip at most K frames apart, each augmented). "
             "Test macro-F1 (%), mean [95 % interval over the pretraining runs] (runs × seeds; † = one pretraining "
             "run, the interval then covers its downstream seeds only), and the pool diagnostics of the checkpoints "
             "(effective rank and k-NN macro-F1 after pretraining, averaged over the runs). Δ pairs each mode's "
             "runs with the reference mode's runs of the same pretraining and downstream seeds (the same initial "
             "network and label subset): paired t-test over the pretraining runs, Holm-corrected over every "
             "comparison of the track's section (▲/▼: significant at α = 0.05).", ""]
    for (track, digest), tr in runs.groupby(["track", "protocol_hash"], sort=True):
        reference = positives.reference_mode(tr)
        scores = positives.mode_scores(tr)
        comps = {(c.init, c.eval_protocol, c.fraction, c.positives): c
                 for c in (positives.comparisons(tr, reference) if reference else [])}
        lines += [f"### `{track}`", "", f"Protocol `{digest[:12]}`; reference mode: `{reference or 'not recorded'}`.", ""]
        rows = []
        for (init, ev, fraction), modes in scores.items():
            for m in modes:
                c = comps.get((init, ev, fraction, m.positives))
                rows.append([f"`{init_title(init)}`", f"`{ev}`", fraction_title(fraction), f"`{m.positives}`",
                             _cell_or_mean(m.cell),
                             "—" if math.isnan(m.rank_after) else f"{m.rank_after:.1f}",
                             "—" if math.isnan(m.knn_after) else pct(m.knn_after),
                             "reference" if m.positives == reference else delta_cell(c.delta if c else None)])
        lines += markdown_table(rows, ["init", "protocol", "labels", "positives", "test macro-F1", "rank after",
                                       "pool k-NN after", f"Δ vs `{reference}`"],
                                ["left", "left", "right", "left", "left", "right", "right", "left"]) + [""]
        tested = [c for c in comps.values() if c.delta.tested]
        wins = [c for c in tested if c.delta.marker]
        if not comps:
            lines += ["No mode has runs paired with the reference mode yet: nothing is compared.", ""]
        elif not tested:
            lines += ["No comparison has two pretraining runs yet: the intervals above cover downstream seeds only, "
                      "and nothing is tested.", ""]
        else:
            lines += [f"{len(tested)} comparison{'s' if len(tested) != 1 else ''} tested; "
                      + ("significant after Holm's correction: " + "; ".join(
                          f"`{init_title(c.init)}` `{c.positives}` {c.eval_protocol} at {fraction_title(c.fraction)} "
                          f"{signed_pct(c.delta.comparison.diff.mean)} {p_value(c.delta.p_holm)}" for c in wins)
                         if wins else "none is significant after Holm's correction") + ".", ""]
        first = tr.iloc[0]
        data = data_flags(first)
        methods = sorted({init_method(i) for i in tr["init"]})
        lines += [f"Reproduce: `sslbench ablation positives --method {','.join(methods)} --preset {first['preset']}"
                  f"{data}{start_flag_of(tr)}`.", ""]
    return lines


def start_flag_of(runs: pd.DataFrame) -> str:
    """` --start imagenet` when the runs continued from ImageNet's weights, else ""."""
    starts = {init_start(i) for i in runs["init"]}
    return "" if starts == {RANDOM_START} else f" --start {sorted(starts - {RANDOM_START})[0]}"


def continued_recipe_section(page: Page) -> list[str]:
    """Markdown lines of the continued-recipe section (empty when there are no continued-recipe runs)."""
    runs = continued_recipe.expand(page.results.ablation)
    if runs.empty:
        return []
    lines = ["## Continued pretraining: the recipe, chosen on validation", "",
             "How should a method continue from ImageNet's weights on the videos? Each candidate of "
             "`protocols/continued_recipe.toml` continues every method from ImageNet with the track's pretraining "
             "settings and the candidate's knobs, evaluated at the protocol's label fraction. Each method continues "
             "with the candidate of its highest **validation** macro-F1 (✓; the mean over its pretraining runs and "
             "seeds; ties to the candidate listed first): every method is given the same candidates, so none is "
             "tuned more than another. The mean over the methods and the test column are shown after the choice "
             "and are never read by it. Encoder change and the pool's k-NN macro-F1 after pretraining are the "
             "checkpoints' diagnostics, averaged over the methods.", ""]
    main = page.results.main
    for track in sorted(runs["track"].unique()):
        tr = runs[runs["track"] == track]
        choice = continued_recipe.choose(tr)
        tests = continued_recipe.test_means(tr, choice)
        evals = ", ".join(f"`{e}`" for e in sorted(tr["eval_protocol"].unique()))
        fraction = fraction_title(tr["fraction"].iloc[0])
        n = len(choice.recipes)
        lines += [f"### `{track}`", "",
                  f"Validation macro-F1 (%) of {evals} at {fraction} labels; {n} recipe{'s' if n != 1 else ''} tried"
                  + (", the same ones for every method." if choice.complete else "."), ""]
        methods = sorted({init_method(i) for i in tr["init"]})
        rows = []
        for r in choice.recipes:
            rows.append([f"`{r.name}`", continued_recipe.knobs_text(r.knobs)]
                        + [(pct(r.val[m]) + (" ✓" if choice.chosen.get(m) is r else "")) if m in r.val else NOT_RUN
                           for m in methods]
                        + [pct(r.mean_val) if not math.isnan(r.mean_val) else NOT_RUN,
                           pct(tests[r.name]) if not math.isnan(tests[r.name]) else NOT_RUN,
                           "—" if math.isnan(r.encoder_change) else f"{r.encoder_change:.3g}",
                           "—" if math.isnan(r.knn_after) else pct(r.knn_after)])
        headers = (["recipe", "knobs"] + [f"{init_method(m)}" for m in methods]
                   + ["mean val", "mean test (not used)", "encoder change", "pool k-NN after"])
        lines += markdown_table(rows, headers, ["left", "left"] + ["right"] * (len(headers) - 2)) + [""]
        refs = continued_recipe.reference_val(main, tr)
        if refs:
            lines += ["For comparison, the baselines' validation macro-F1 in the track's main results (same protocol "
                      "version and labels): " + ", ".join(f"`{i}` {pct(v)}" for i, v in sorted(refs.items())) + ".", ""]
        lines += [recipe_choice_text(choice, main[main["track"] == track]), ""]
        lines += [f"Reproduce: `sslbench ablation continued-recipe --preset {tr['preset'].iloc[0]}`.", ""]
    return lines


def recipe_choice_text(choice: continued_recipe.Choice, main: pd.DataFrame) -> str:
    """Each method's choice in words, and whether the track's continued rows ran with it."""
    if not choice.chosen:
        return "No method has run a recipe yet: nothing is chosen."
    text = "Chosen, per method: " + "; ".join(f"`{m}` `{r.name}` ({pct(r.val[m])})"
                                              for m, r in sorted(choice.chosen.items())) + "."
    if choice.missing:
        text += (" Provisional: " + "; ".join(f"{m} lacks {', '.join(f'`{n}`' for n in names)}"
                                              for m, names in sorted(choice.missing.items()))
                 + " (chosen among the recipes it has).")
    rows = main[main["recipe"].notna()]
    if rows.empty:
        return text + " No continued row of the main grid yet."
    ran = {}  # method → the recipes its main-grid rows ran with
    for init, recipe in zip(rows["init"], rows["recipe"], strict=True):
        ran.setdefault(init_method(init), set()).add(continued_recipe.recipe_key(recipe))
    other = {m: used for m, used in sorted(ran.items())
             if m in choice.chosen and used != {continued_recipe.recipe_key(choice.chosen[m].knobs)}}
    if not other:
        return text + f" The track's continued rows ({', '.join(f'`{m}`' for m in sorted(ran))}) ran with theirs."
    return text + (" **Continued rows that ran with another recipe**: "
                   + "; ".join(f"`{m}` (" + "; ".join(sorted(continued_recipe.knobs_text(json.loads(u)) for u in used))
                               + ")" for m, used in other.items())
                   + ": set the preset's `[pretrain.continued]` (or the method's `[pretrain.method_continued.<method>]`)"
                   " to the chosen one and rerun them.")


def reference_text(main: pd.DataFrame, curve: pd.DataFrame, eval_protocol: str, fraction: str) -> str:
    """The sentence naming the figure's reference lines (`imagenet`, `random`) and their values."""
    cells = learning_curve.reference_cells(main, curve, eval_protocol)
    where = f"the track's main `{eval_protocol}` results at {fraction} labels (the protocol version the curve used)"
    if not cells:
        return f"No `imagenet` or `random` results in {where}: the figure has no reference lines."
    return (f"Reference lines, from {where}: "
            + ", ".join(f"`{init}` {_cell_or_mean(cell)}" for init, cell in cells.items()) + ".")


def _knn_text(before: float, after: float) -> str:
    return "—" if math.isnan(after) else f"{pct(before)} → {pct(after)}"


def budget_table(curve: pd.DataFrame, evals: list[str]) -> list[str]:
    """Method × budget: the checkpoints' diagnostics and each evaluation protocol's val and test macro-F1."""
    rows = []
    for r in learning_curve.budget_rows(curve):
        # A checkpoint made before diagnostics were recorded has none: "—", not "nan".
        row = [init_title(r.init), str(r.steps), "—" if math.isnan(r.encoder_change) else f"{r.encoder_change:.3g}",
               "—" if math.isnan(r.rank[1]) else f"{r.rank[0]:.1f} → {r.rank[1]:.1f}", _knn_text(*r.knn)]
        for ev in evals:
            score = r.scores.get(ev)
            row += [pct(score.val), _cell_or_mean(score.test)] if score else [NOT_RUN, NOT_RUN]
        rows.append(row)
    headers = ["method", "steps", "encoder change", "effective rank", "pool k-NN macro-F1 (%)"]
    for ev in evals:
        headers += [f"{ev} val macro-F1 (%)", f"{ev} test macro-F1 (%)"]
    return markdown_table(rows, headers, ["left"] + ["right"] * (len(headers) - 1))


def hparams_lines(runs: pd.DataFrame) -> list[str]:
    """Each method's pretraining hyper-parameters as its checkpoints recorded them (one line per distinct set),
    so that a reader sees what every method was given."""
    lines = []
    for init, g in runs.groupby("init", sort=True):
        seen = []
        for hp in g["pretrain_hparams"]:
            if isinstance(hp, dict) and hp not in seen:
                seen.append(hp)
        for hp in seen:
            lines.append(f"- `{init_title(init)}`: " + ", ".join(f"{k} {_setting(v)}" for k, v in sorted(hp.items())))
    if not lines:
        return []
    return ["Hyper-parameters of these pretraining runs, as their checkpoints recorded them (the batch is the "
            "global batch each ran at):", "", *lines, ""]


def knn_rise_section(curve: pd.DataFrame) -> list[str]:
    """The smallest budget at which the pool k-NN rose by `learning_curve.KNN_RISE` in every pretraining run."""
    points = f"{100 * learning_curve.KNN_RISE:g} points"
    lines = [f"#### Steps until the pool k-NN rises by {points}", "",
             f"The smallest budget at which every pretraining run raised the pool's k-NN macro-F1 by at least "
             f"{points} (after − before), and the smallest rise among that budget's runs (at the largest budget "
             "when none did).", ""]
    rows = []
    for r in learning_curve.knn_rise(curve):
        if not r.labelled:
            rows.append([init_title(r.init), "— (the pool has no labels)", "—"])
            continue
        rows.append([init_title(r.init), str(r.steps) if r.steps is not None else f"not within {r.largest} steps",
                     signed_pct(r.rise)])
    return lines + markdown_table(rows, ["method", f"steps until +{points}", "smallest rise (points)"],
                                  ["left", "right", "right"]) + [""]


def flattening_text(trends: list[learning_curve.Trend], eval_protocol: str, fraction: str) -> str:
    """One sentence: which methods' curves have flattened under `eval_protocol` and which have not."""
    if not trends:
        return f"{eval_protocol} at {fraction}: every method has one budget so far, no curve to read yet."
    same = len({(t.before, t.after) for t in trends}) == 1
    doubling = all(t.after == 2 * t.before for t in trends)
    step = f"the last {'doubling' if doubling else 'increase'} of the budget"
    if same:
        step += f", {trends[0].before} → {trends[0].after} steps,"

    def names(group: list[learning_curve.Trend]) -> str:
        if not group:
            return "none"
        return ", ".join(f"`{init_title(t.init)}` ({'' if same else f'{t.before} → {t.after} steps: '}"
                         f"{signed_pct(t.gain)}{'' if math.isnan(t.half_width) else f' against ±{pct(t.half_width)}'})"
                         for t in group)

    flat = [t for t in trends if t.flattened is True]
    rising = [t for t in trends if t.flattened is False]
    text = (f"{eval_protocol} at {fraction}: flattened ({step} raised the test macro-F1 by less than the half-width "
            f"of the 95 % interval at the largest budget): {names(flat)}; still rising: {names(rising)}")
    undecided = [t for t in trends if t.flattened is None]
    if undecided:
        text += f"; not decided (no interval at the largest budget): {names(undecided)}"
    return text + "."


def cross_scanner_section(page: Page) -> list[str]:
    """Markdown lines of the cross-scanner section (empty when there are no cross-scanner runs)."""
    runs = cross_scanner.expand(page.results.cross_scanner)
    if runs.empty:
        return []
    lines = ["## Cross-scanner: leave one scanner out", "",
             "Is an init's accuracy robust to a scanner it never saw labels from? For every scanner of the "
             "downstream data in turn (`protocols/cross_scanner.toml`), the evaluation protocol is trained on the "
             "other scanners' train images at each label fraction and seed, selected on their validation images, "
             "and the same model scores the held-out scanner's test images (**held out**) and the training "
             "scanners' own test images (**in scanner**); no image of the held-out scanner enters training or "
             "selection. Test macro-F1 (%), pooled over the held-out scanners: mean [95 % interval] (pretraining "
             "runs × jobs; † = one pretraining run, the interval then covers its downstream jobs only). **Drop** = "
             "held out − in scanner, paired within each run; with ≥ 2 pretraining runs it is tested by the paired "
             "t-test over the pretraining runs' mean drops, Holm-adjusted over every test of the track's section.",
             ""]
    for track in sorted(runs["track"].unique()):
        tr = runs[runs["track"] == track]
        scanners = sorted(tr["held_out"].unique())
        lines += [f"### `{track}`", "",
                  f"Held-out scanners: {', '.join(f'`{s}`' for s in scanners)}; downstream data "
                  f"`{tr['downstream_dataset'].iloc[0]}`, fingerprint {_distinct(tr['fp_downstream'], lambda v: f'`{str(v)[:12]}`')}; "
                  f"{_scoped_hashes_text(tr)}.", ""]
        table = []
        for r in cross_scanner.rows(tr):
            drop = r.drop.diff
            mark = CONDITIONAL if not r.tested and not r.drop.constant else ""
            drop_text = (f"{interval_text(drop, signed_pct)}{mark}" if not math.isnan(drop.low)
                         else f"{signed_pct(drop.mean)} (no interval)")
            if r.tested:
                drop_text += f" {p_value(r.p_holm)}"
            table.append([init_label(tr, r.init), r.eval_protocol, fraction_title(r.fraction),
                          _cell_or_mean(r.in_scanner), _cell_or_mean(r.held_out), drop_text,
                          cross_scanner.supports(r)])
        lines += markdown_table(table, ["init", "protocol", "labels", "in scanner", "held out", "drop",
                                        "what the statistics support"],
                                ["left", "left", "right", "right", "right", "right", "left"]) + [""]
        per = cross_scanner.per_scanner(tr)
        lines += ["Mean drop (F1 points) per held-out scanner, over every label fraction and seed (descriptive):", ""]
        lines += markdown_table([[init_label(tr, init), ev] + [signed_pct(v) if not math.isnan(v) else NOT_RUN
                                                              for v in row]
                                 for (init, ev), row in zip(per.index, per.to_numpy(), strict=True)],
                                ["init", "protocol"] + [f"`{s}` held out" for s in per.columns],
                                ["left", "left"] + ["right"] * len(per.columns)) + [""]
        ssl = sorted(tr.loc[tr["init_kind"] == "ssl", "init"].unique())
        first = tr.iloc[0]
        data = data_flags(first)
        lines += [f"Reproduce: `sslbench ablation cross-scanner --method {','.join(ssl) or 'imagenet'} "
                  f"--preset {first['preset']}{data}`.", ""]
    return lines


def _scoped_hashes_text(tr: pd.DataFrame) -> str:
    """The cross-scanner protocol's hash as the track's runs record it: one per evaluation protocol (each
    run records the file scoped to its own, `protocols.spec.scoped_content`), named when there are several."""
    per = {ev: sorted(g["protocol_hash"].unique()) for ev, g in tr.groupby("eval_protocol", sort=True)}
    if len(per) == 1:
        hashes = next(iter(per.values()))
        return f"protocol `{hashes[0][:12]}`{' + older versions' if len(hashes) > 1 else ''}"
    return "protocol " + ", ".join(f"`{h[0][:12]}` ({ev}{' + older versions' if len(h) > 1 else ''})"
                                   for ev, h in per.items())


def _cell_or_mean(cell: analysis.Cell) -> str:
    if math.isnan(cell.interval.low):
        return f"{pct(cell.interval.mean)} ({runs_text(cell)}, no interval)"
    return f"{interval_text(cell.interval)}{CONDITIONAL if cell.conditional else ''} ({runs_text(cell)})"


# Order = order on the page.
SECTIONS: list[Callable[[Page], list[str]]] = [header_section, tracks_section, ablation_section,
                                               learning_curve_section, positives_section, continued_recipe_section,
                                               cross_scanner_section, provenance_section]


def render(results: Results, known_hashes: dict[str, str], results_label: str = REPOSITORY_RESULTS) -> str:
    page = Page(results, known_hashes, results_label)
    lines: list[str] = []
    for section in SECTIONS:
        lines += section(page)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"
