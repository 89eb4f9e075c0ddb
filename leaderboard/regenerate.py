"""LEADERBOARD.md and its figures from a results folder: write them, or check that the page is what the
results give (CI's gate).

`known_hashes` (protocol name → hash of its current file) comes from the caller: the command line
hashes protocols/*.toml, so the leaderboard itself reads result files only.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from leaderboard.atomic import atomic_write_text
from leaderboard.figures import write_figures
from leaderboard.load import load_results
from leaderboard.render import FIGURES_DIR, render
from leaderboard.validate import Problem, validate_paths

LEADERBOARD_NAME = "LEADERBOARD.md"


def default_leaderboard(results_dir: Path) -> Path:
    """The page of a results folder: LEADERBOARD.md beside it (leaderboard/LEADERBOARD.md for the
    repository's leaderboard/results)."""
    return Path(results_dir).parent / LEADERBOARD_NAME


def regenerate(results_dir: Path, out_md: Path, known_hashes: dict[str, str]) -> Path:
    """Write `out_md` (atomically: never a half-written page) and the figures in `figures/` beside it."""
    out_md = Path(out_md)
    results = load_results(Path(results_dir))
    atomic_write_text(out_md, render(results, known_hashes))
    write_figures(results, known_hashes, out_md.parent / FIGURES_DIR)
    return out_md


def blocking_problems(results_dir: Path, known_hashes: dict[str, str],
                      retired_hashes: dict[str, dict[str, int]] | None = None) -> list[Problem]:
    """Exactly what `sslbench validate` finds in the results folder: results of an earlier protocol
    version pass only when that version is in `retired_hashes` (they are then shown apart, not ranked)."""
    if not Path(results_dir).exists():
        return []
    problems, _ = validate_paths([results_dir], known_hashes, retired_hashes)
    return problems


def page_diff(results_dir: Path, out_md: Path, known_hashes: dict[str, str]) -> list[str]:
    """A unified diff from `out_md` to the page the results give; [] when they agree."""
    out_md = Path(out_md)
    expected = render(load_results(Path(results_dir)), known_hashes)
    current = out_md.read_text(encoding="utf-8") if out_md.exists() else ""
    if current == expected:
        return []
    return list(difflib.unified_diff(current.splitlines(keepends=True), expected.splitlines(keepends=True),
                                     fromfile=f"{out_md} (committed)", tofile=f"{out_md} (from the results)"))
