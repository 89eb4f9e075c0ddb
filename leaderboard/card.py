"""The leaderboard rows of one checkpoint, for an exported encoder's model card.

Reads result files only (like the rest of the leaderboard): every track where the checkpoint was
evaluated, each protocol's current table restricted to the checkpoint's init and the baselines (and, for
a run continued from ImageNet weights, its method from random weights), with the same means and 95 %
intervals as LEADERBOARD.md.
"""
from __future__ import annotations

from pathlib import Path

from leaderboard import analysis
from leaderboard.load import load_results
from leaderboard.render import CONDITIONAL, metric_table
from leaderboard.results import init_method, init_title


def checkpoint_rows(results_dir: Path, checkpoint_hash: str, known_hashes: dict[str, str],
                    metric: str = "macro_f1") -> list[str]:
    """Markdown lines: per track and protocol, the table rows of the init that evaluated
    `checkpoint_hash` (all its pretraining runs, as the leaderboard pools them) beside the baselines.
    Empty when no result names the checkpoint."""
    main = load_results(results_dir).main
    mine = main[main["checkpoint_hash"] == checkpoint_hash]
    if mine.empty:
        return []
    lines: list[str] = []
    for track, own in mine.groupby("track", sort=True):
        # Beside the baselines, a continued init's method from random weights: the row it is paired with.
        names = set(own["init"]) | set(analysis.BASELINE_ORDER) | {init_method(i) for i in own["init"]}
        runs = main[(main["track"] == track) & main["init"].isin(names)]
        seeds = ", ".join(str(s) for s in sorted(set(own["pretrain_seed"])))
        lines += [f"Track `{track}` (this checkpoint: init `{', '.join(sorted(map(init_title, set(own['init']))))}`, "
                  f"pretraining seed {seeds}); test {analysis.METRICS[metric]} in %, mean [95 % interval] "
                  f"(pretraining runs × seeds), {CONDITIONAL}: over the seeds of one pretraining run:", ""]
        for table in analysis.tables(runs, known_hashes):
            if not table.current:
                continue
            k = table.key
            lines += [f"**{k.protocol}** (v{k.protocol_version}, hash `{k.protocol_hash[:12]}`)", ""]
            lines += metric_table(table, metric) + [""]
    return lines


def no_results_text(results_dir: Path) -> str:
    return (f"No result in `{results_dir}` names this checkpoint: evaluate it with `sslbench evaluate "
            "--checkpoint PATH` (or `sslbench bench`) and export again to include its leaderboard rows.")


