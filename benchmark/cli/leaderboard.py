"""`sslbench leaderboard`: regenerate LEADERBOARD.md and its figures from the result files, or
(`--check`) fail with a diff when the committed file is not what the results give. Never imports torch."""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("leaderboard", help="regenerate LEADERBOARD.md and its figures from the result files",
                       description="Read every result JSON under --results, compute the statistics and write "
                                   "the markdown leaderboard and its figures (figures/ beside it). The same "
                                   "results give byte-identical markdown.")
    p.add_argument("--results", type=Path, default=None, metavar="DIR",
                   help="results folder (default: leaderboard/results of this repository)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="markdown file to write (default: leaderboard/LEADERBOARD.md of this repository)")
    p.add_argument("--protocols", type=Path, default=None, metavar="DIR",
                   help="protocol specs whose hashes count as current (default: protocols/ of this repository)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 and print a unified diff when FILE is not what the results "
                        "give, or when a result file fails validation (CI runs this)")
    p.set_defaults(func=_run)


def _defaults(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    from leaderboard.load import DEFAULT_LEADERBOARD, DEFAULT_RESULTS_DIR
    from leaderboard.validate import PROTOCOLS_DIR

    return (args.results or DEFAULT_RESULTS_DIR, args.out or DEFAULT_LEADERBOARD, args.protocols or PROTOCOLS_DIR)


def render_markdown(results_dir: Path, protocols_dir: Path | None = None):
    """(markdown text, loaded results, current protocol hashes)."""
    from leaderboard.load import load_results
    from leaderboard.render import render
    from leaderboard.validate import PROTOCOLS_DIR, known_protocol_hashes

    results = load_results(results_dir)
    known = known_protocol_hashes(protocols_dir or PROTOCOLS_DIR)
    return render(results, known), results, known


def regenerate(results_dir: Path | str, out_md: Path | str, protocols_dir: Path | str | None = None) -> Path:
    """Write `out_md` and the figures in `figures/` beside it from the results under `results_dir`."""
    from leaderboard.atomic import atomic_write_text
    from leaderboard.figures import write_figures

    out_md = Path(out_md)
    text, results, known = render_markdown(Path(results_dir), Path(protocols_dir) if protocols_dir else None)
    atomic_write_text(out_md, text)  # never leave a half-written leaderboard
    write_figures(results, known, out_md.parent / "figures")
    return out_md


def check(results_dir: Path, out_md: Path, protocols_dir: Path) -> int:
    """0 when `out_md` is what the results give and every result file validates; 1 otherwise."""
    from leaderboard.validate import validate_paths

    status = 0
    if results_dir.exists():
        problems, _ = validate_paths([results_dir], protocols_dir)
        # Results of an earlier protocol version are legitimate: they are shown apart, not mixed.
        blocking = [p for p in problems if p.field != "protocol.hash"]
        for problem in blocking:
            print(problem, file=sys.stderr)
        if blocking:
            print(f"sslbench leaderboard --check: {len(blocking)} problem(s) in result files", file=sys.stderr)
            status = 1
    expected, _, _ = render_markdown(results_dir, protocols_dir)
    current = out_md.read_text(encoding="utf-8") if out_md.exists() else ""
    if current != expected:
        diff = difflib.unified_diff(current.splitlines(keepends=True), expected.splitlines(keepends=True),
                                    fromfile=f"{out_md} (committed)", tofile=f"{out_md} (from the results)")
        sys.stdout.writelines(diff)
        print(f"sslbench leaderboard --check: {out_md} is not what the results give; run `make leaderboard` "
              "and commit it with the figures", file=sys.stderr)
        status = 1
    return status


def _run(args: argparse.Namespace) -> int:
    results_dir, out_md, protocols_dir = _defaults(args)
    if args.check:
        return check(results_dir, out_md, protocols_dir)
    path = regenerate(results_dir, out_md, protocols_dir)
    print(f"wrote {path} and its figures in {path.parent / 'figures'}")
    return 0
