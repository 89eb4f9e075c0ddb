"""LEADERBOARD.md, its figures and the HTML page (site/index.html) from a results folder: write them, or
check that the pages are what the results give (CI's gate).

`known_hashes` (protocol name → hash of its current file) comes from the caller: the command line
hashes protocols/*.toml, so the leaderboard itself reads result files only.
"""
from __future__ import annotations

import difflib
import tempfile
from pathlib import Path

from leaderboard.atomic import atomic_write_text
from leaderboard.figures import write_figures
from leaderboard.load import load_results
from leaderboard.render import FIGURES_DIR, render
from leaderboard.results import results_label
from leaderboard.validate import Problem, validate_paths
from leaderboard.webpage import SITE_DIR, SITE_NAME, render_site

LEADERBOARD_NAME = "LEADERBOARD.md"


def default_leaderboard(results_dir: Path) -> Path:
    """The page of a results folder: LEADERBOARD.md beside it (leaderboard/LEADERBOARD.md for the
    repository's leaderboard/results)."""
    return Path(results_dir).parent / LEADERBOARD_NAME


def site_path(out_md: Path) -> Path:
    """The HTML page of a markdown page: site/index.html beside it."""
    return Path(out_md).parent / SITE_DIR / SITE_NAME


def regenerate(results_dir: Path, out_md: Path, known_hashes: dict[str, str]) -> Path:
    """Write `out_md` (atomically: never a half-written page), the figures in `figures/` beside it and
    the self-contained HTML page (`site_path`), which embeds those figures."""
    out_md = Path(out_md)
    results = load_results(Path(results_dir))
    label = results_label(results_dir, out_md.parent)
    atomic_write_text(out_md, render(results, known_hashes, label))
    written = write_figures(results, known_hashes, out_md.parent / FIGURES_DIR)
    pngs = {p.name: p.read_bytes() for p in written}
    atomic_write_text(site_path(out_md), render_site(results, known_hashes, pngs, label))
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
    expected = render(load_results(Path(results_dir)), known_hashes, results_label(results_dir, out_md.parent))
    current = out_md.read_text(encoding="utf-8") if out_md.exists() else ""
    if current == expected:
        return []
    return list(difflib.unified_diff(current.splitlines(keepends=True), expected.splitlines(keepends=True),
                                     fromfile=f"{out_md} (committed)", tofile=f"{out_md} (from the results)"))


def expected_site(results_dir: Path, out_md: Path, known_hashes: dict[str, str]) -> str:
    """The HTML page the results give for the page `out_md`, its figures drawn into a scratch folder
    (nothing is written beside the page)."""
    results = load_results(Path(results_dir))
    with tempfile.TemporaryDirectory(prefix="sslbench-figures-") as tmp:
        pngs = {p.name: p.read_bytes() for p in write_figures(results, known_hashes, Path(tmp))}
    return render_site(results, known_hashes, pngs, results_label(results_dir, Path(out_md).parent))


def site_difference(results_dir: Path, out_md: Path, known_hashes: dict[str, str]) -> str | None:
    """None when `site_path(out_md)` is what the results give; else one line saying where it differs (a
    diff of base64 figures would say nothing)."""
    path = site_path(out_md)
    expected = expected_site(results_dir, out_md, known_hashes)
    if not path.exists():
        return f"{path} is missing"
    current = path.read_text(encoding="utf-8")
    if current == expected:
        return None
    old, new = current.splitlines(), expected.splitlines()
    line = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), min(len(old), len(new)))
    return (f"{path} is not what the results give (first difference at line {line + 1} of {len(new)}: "
            f"committed {_excerpt(old, line)!r}, from the results {_excerpt(new, line)!r})")


def _excerpt(lines: list[str], i: int, width: int = 80) -> str:
    text = lines[i] if i < len(lines) else "<end of file>"
    return text if len(text) <= width else text[:width] + "…"
