"""The leaderboard's figures (PNG, Agg backend, no timestamp metadata: same results → same bytes).

- macro-F1 vs label fraction with 95 % interval bands, one per track × protocol (current version);
- the per-class F1 heatmap of a track's best-ranked init;
- the variance-vs-size ablation: macro-F1 vs subjects (diversity) and vs frames (size), per track;
- the learning curves: macro-F1 and the pool k-NN against the pretraining budget, per track.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leaderboard import ablation, analysis, learning_curve
from leaderboard.load import Results
from leaderboard.results import RANDOM_START, fraction_title, init_method, init_start, init_title

DPI = 120
# PNG text chunks without the "Software: Matplotlib x.y" entry; Agg adds no date to PNGs.
PNG_METADATA = {"Software": None}

# One line style per evaluation protocol in the ablation figure; a protocol not named here is dotted.
LINESTYLES = {"finetune": "-", "linear_probe": "--", "knn": "-."}


def f1_vs_fraction_name(track: str, protocol: str) -> str:
    return f"f1_vs_fraction_{track}_{protocol}.png"


def per_class_f1_name(track: str) -> str:
    return f"per_class_f1_{track}.png"


def variance_vs_size_name(track: str) -> str:
    return f"variance_vs_size_{track}.png"


def learning_curve_name(track: str) -> str:
    return f"learning_curve_{track}.png"


def _colors(inits: list[str]) -> dict[str, tuple]:
    """One colour per method of a track, the same in every figure of that track: a continued row
    (`M ← imagenet`) takes its method's colour and `CONTINUED_STYLE`, so the two starts of a method pair up
    by eye and ten colours cover the seven built-in methods and both baselines."""
    import seaborn as sns

    methods = list(dict.fromkeys(init_method(i) for i in inits))
    palette = sns.color_palette("tab10", n_colors=max(10, len(methods)))
    by_method = {m: palette[i % len(palette)] for i, m in enumerate(methods)}
    return {init: by_method[init_method(init)] for init in inits}


CONTINUED_STYLE = {"linestyle": "-.", "marker": "s"}


def _style(init: str, baselines: set[str]) -> dict:
    """Line style and marker of an init: baselines dashed, continued rows dash-dotted with squares."""
    if init in baselines:
        return {"linestyle": "--", "marker": "o"}
    return dict(CONTINUED_STYLE) if init_start(init) != RANDOM_START else {"linestyle": "-", "marker": "o"}


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, metadata=PNG_METADATA, bbox_inches="tight")
    return path


def plot_f1_vs_fraction(table: analysis.Table, colors: dict[str, tuple], path: Path) -> Path:
    from matplotlib.figure import Figure

    cells = analysis.summary(table, "macro_f1")
    inits = table.inits
    fig = Figure(figsize=(7.0, 4.2))
    ax = fig.add_subplot()
    baselines = set(table.runs.loc[table.runs["init_kind"] == "baseline", "init"])
    for init in inits:
        points = [(f, cells[(init, f)].interval) for f in table.fractions if (init, f) in cells]
        xs = [100 * f for f, _ in points]
        ax.plot(xs, [100 * iv.mean for _, iv in points], color=colors[init], label=init_title(init),
                **_style(init, baselines))
        band = [(100 * f, 100 * iv.low, 100 * iv.high) for f, iv in points if iv.n >= 2 and iv.low == iv.low]
        if band:
            bx, lo, hi = zip(*band, strict=True)
            ax.fill_between(bx, lo, hi, color=colors[init], alpha=0.18, linewidth=0)
    ax.set_xscale("log")
    ax.set_xticks([100 * f for f in table.fractions], [fraction_title(f) for f in table.fractions])
    ax.minorticks_off()
    ax.set_xlabel("labelled training data")
    ax.set_ylabel("test macro-F1 (%)")
    ax.grid(True, alpha=0.3)
    k = table.key
    # With one pretraining run a band covers only its downstream seeds (the table's †): say which.
    one_run = any(cell.conditional for cell in cells.values())
    bands = ("bands = 95 % interval over downstream seeds of one pretraining run (†)" if one_run
             else "bands = 95 % interval over pretraining runs")
    ax.set_title(f"{k.track}: {k.protocol} (v{k.protocol_version}); {bands}", fontsize=10)
    continued = any(init_start(i) != RANDOM_START for i in inits)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              title="init (-- baseline" + (", -· continued from ImageNet)" if continued else ")"))
    return _save(fig, path)


def plot_per_class_f1(runs, init: str, track: str, path: Path) -> Path:
    import seaborn as sns
    from matplotlib.figure import Figure

    table = analysis.per_class_f1(runs, init) * 100
    table.index = [f"{p} {fraction_title(f)}" for p, f in table.index]
    fig = Figure(figsize=(1.1 * len(table.columns) + 2.8, 0.5 * len(table) + 1.6))
    ax = fig.add_subplot()
    sns.heatmap(table, annot=True, fmt=".1f", vmin=0, vmax=100, cmap="viridis", ax=ax,
                cbar_kws={"label": "test F1 (%)"})
    ax.set_xlabel("class")
    ax.set_ylabel("")
    ax.set_title(f"{track}: per-class F1 of {init} (mean over runs)", fontsize=10)
    ax.tick_params(axis="y", rotation=0)
    return _save(fig, path)


def plot_variance_vs_size(results: Results, figures_dir: Path) -> list[Path]:
    """One two-panel figure per track: macro-F1 vs subjects (diversity) and vs frames (size)."""
    from matplotlib.figure import Figure

    runs = ablation.expand(results.ablation)
    written = []
    for track in sorted(runs["track"].unique()):
        tr = runs[runs["track"] == track]
        fig = Figure(figsize=(10.0, 4.0))
        axes = fig.subplots(1, 2, sharey=True)
        for ax, axis, xcol, title in ((axes[0], "diversity", "subjects", "diversity: subjects at a fixed frame budget"),
                                      (axes[1], "size", "frames", "size: frames at fixed subjects")):
            series = list(tr[tr["axis"] == axis].groupby(["init", "eval_protocol"], sort=True))
            for i, ((init, ev), g) in enumerate(series):
                m = ablation.subset_means(g)
                dodge = 2 ** (0.06 * (i - (len(series) - 1) / 2))  # side by side, so the error bars do not hide each other
                ivs = list(m["interval"])
                yerr = np.array([[100 * (iv.mean - iv.low) if iv.n > 1 else 0 for iv in ivs],
                                 [100 * (iv.high - iv.mean) if iv.n > 1 else 0 for iv in ivs]])
                ax.errorbar(m[xcol] * dodge, 100 * m["macro_f1"], yerr=yerr, marker="o", capsize=3,
                            linestyle=LINESTYLES.get(ev, ":"), label=f"{init_title(init)}, {ev}")
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
        path = figures_dir / variance_vs_size_name(track)
        fig.savefig(path, dpi=DPI, metadata=PNG_METADATA, bbox_inches="tight")
        written.append(path)
    return written


def plot_learning_curve(results: Results, figures_dir: Path) -> list[Path]:
    """One two-panel figure per track: each method's test macro-F1 against its pretraining budget (95 %
    intervals as error bars, the track's `imagenet` and `random` results as horizontal lines), and its pool
    k-NN macro-F1 against the budget from where it started (before pretraining)."""
    from matplotlib.figure import Figure

    runs = learning_curve.expand(results.ablation)
    written = []
    for track in sorted(runs["track"].unique()):
        tr = runs[runs["track"] == track]
        main = results.main[results.main["track"] == track]
        colors = _colors(analysis.init_order(pd.concat([main, tr])[["init", "init_kind"]]))
        evals = sorted(tr["eval_protocol"].unique())
        shown = "linear_probe" if "linear_probe" in evals else evals[0]
        budgets = sorted(tr["steps"].unique())
        rows = learning_curve.budget_rows(tr)
        inits = sorted(tr["init"].unique())
        fig = Figure(figsize=(11.0, 4.2))
        score_ax, knn_ax = fig.subplots(1, 2)
        conditional = set()
        for i, init in enumerate(inits):
            mine = [r for r in rows if r.init == init and shown in r.scores]
            cells = [r.scores[shown].test for r in mine]
            conditional |= {c.conditional for c in cells}
            dodge = 2 ** (0.025 * (i - (len(inits) - 1) / 2))  # side by side, so the error bars do not hide each other
            ivs = [c.interval for c in cells]
            yerr = np.array([[100 * (iv.mean - iv.low) if iv.n > 1 else 0 for iv in ivs],
                             [100 * (iv.high - iv.mean) if iv.n > 1 else 0 for iv in ivs]])
            score_ax.errorbar(np.array([r.steps for r in mine], float) * dodge,
                              np.array([100 * iv.mean for iv in ivs], float), yerr=yerr, capsize=3,
                              color=colors[init], label=init_title(init), **_style(init, set()))
        for init, cell in learning_curve.reference_cells(results.main, tr, shown).items():
            score_ax.axhline(100 * cell.interval.mean, color=colors.get(init, "grey"),
                             linestyle="--" if init == analysis.REFERENCE_INIT else ":", linewidth=1.2,
                             label=f"{init} (main grid)")
        # With one pretraining run an interval covers only its downstream seeds (the table's †): say which.
        if conditional == {True}:
            bars = "bars: 95 % interval over one pretraining run's downstream seeds (†)"
        elif conditional == {False}:
            bars = "bars: 95 % interval over pretraining runs"
        else:
            bars = "bars: 95 % interval over pretraining runs (one run: over its seeds, †)"
        score_ax.set_title(f"{shown} at {fraction_title(tr['fraction'].iloc[0])} labels\n{bars}", fontsize=9)
        score_ax.set_ylabel("test macro-F1 (%)")
        # The start (before pretraining) sits half a doubling left of the smallest budget on the log axis.
        start = budgets[0] / 2
        starts = learning_curve.start_values(tr)
        labelled = False
        for init in inits:
            mine = [r for r in rows if r.init == init and not np.isnan(r.knn[1])]
            if not mine or np.isnan(starts[init]):
                continue
            labelled = True
            xs, ys = [start] + [r.steps for r in mine], [100 * starts[init]] + [100 * r.knn[1] for r in mine]
            knn_ax.plot(xs[:2], ys[:2], linestyle=":", color=colors[init])
            knn_ax.plot(xs[1:], ys[1:], color=colors[init], label=init_title(init), **_style(init, set()))
            knn_ax.plot(xs[:1], ys[:1], marker="o", markerfacecolor="white", color=colors[init], linestyle="none")
        knn_ax.set_title("pool k-NN macro-F1 of each checkpoint\n(hollow: the network before pretraining)" if labelled
                         else "pool k-NN: the pretraining pool has no labels", fontsize=9)
        knn_ax.set_ylabel("pool k-NN macro-F1 (%)")
        steps_labels = [f"{b:g}" for b in budgets]
        for ax, ticks, labels in ((score_ax, budgets, steps_labels), (knn_ax, [start, *budgets], ["start", *steps_labels])):
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, labels)
            ax.minorticks_off()
            ax.set_xlabel("pretraining steps")
            ax.grid(alpha=0.3)
        handles = dict(zip(*reversed(score_ax.get_legend_handles_labels()), strict=True))
        handles = {label: handles[label] for label in sorted(handles, key=lambda lb: (lb not in inits, lb))}
        fig.legend(list(handles.values()), list(handles), fontsize=8, loc="lower center",
                   ncol=min(5, len(handles)), bbox_to_anchor=(0.5, -0.1))
        fig.suptitle(f"learning curves — {track}", fontsize=10, y=1.04)  # above the two-line panel titles
        figures_dir.mkdir(parents=True, exist_ok=True)
        written.append(_save(fig, figures_dir / learning_curve_name(track)))
    return written


def write_figures(results: Results, known_hashes: dict[str, str], figures_dir: Path) -> list[Path]:
    """Draw every figure the markdown links into `figures_dir`; PNGs there that no longer belong go."""
    import matplotlib

    matplotlib.use("Agg")
    figures_dir = Path(figures_dir)
    main = results.main
    all_tables = analysis.tables(main, known_hashes)
    written: list[Path] = []
    if all_tables:
        figures_dir.mkdir(parents=True, exist_ok=True)
    for track in sorted(main["track"].unique()):
        track_tables = [t for t in all_tables if t.key.track == track]
        colors = _colors(analysis.init_order(main[main["track"] == track]))
        for table in track_tables:
            if table.current:
                written.append(plot_f1_vs_fraction(table, colors, figures_dir / f1_vs_fraction_name(track, table.key.protocol)))
        ranking = analysis.ranking(track_tables)
        if ranking.best is not None:
            current_runs = main[(main["track"] == track)]
            current_runs = current_runs[current_runs["protocol_hash"].isin({t.key.protocol_hash for t in track_tables
                                                                            if t.current})]
            written.append(plot_per_class_f1(current_runs, ranking.best, track,
                                             figures_dir / per_class_f1_name(track)))
    written += plot_variance_vs_size(results, figures_dir)
    written += plot_learning_curve(results, figures_dir)
    if figures_dir.is_dir():
        for stale in sorted(set(figures_dir.glob("*.png")) - set(written)):
            stale.unlink()
    return written
