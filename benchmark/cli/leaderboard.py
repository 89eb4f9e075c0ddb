"""`sslbench leaderboard`: regenerate LEADERBOARD.md and its figures from the result files, or
(`--check`) fail with a diff when the page is not what the results give. Never imports torch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("leaderboard",
                       help="regenerate LEADERBOARD.md, its figures and site/index.html from the result files",
                       description="Read every result JSON under --results, compute the statistics and write "
                                   "the markdown leaderboard, its figures (figures/ beside it) and a self-contained "
                                   "HTML page (site/index.html beside it). The same results give "
                                   "byte-identical files (the page names the results folder relative to "
                                   "this repository, or else to the page).")
    p.add_argument("--results", type=Path, default=None, metavar="DIR",
                   help="results folder (default: $SSLBENCH_RESULTS_DIR or leaderboard/results of this repository)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="markdown file to write (default: LEADERBOARD.md beside the results folder: "
                        "leaderboard/LEADERBOARD.md for leaderboard/results)")
    p.add_argument("--protocols", type=Path, default=None, metavar="DIR",
                   help="protocol specs whose hashes count as current (default: protocols/ of this repository)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 and print a unified diff when FILE is not what the results "
                        "give, say where site/index.html differs when it is not, or when a result file "
                        "fails validation exactly as `sslbench validate` reports it (CI runs this)")
    p.add_argument("--plan", type=float, default=None, metavar="POINTS",
                   help="write nothing; print, per track, how many pretraining runs each Δ vs imagenet would need "
                        "for a 95 %% interval of ±POINTS (macro-F1 × 100), from the variation between and within "
                        "the runs so far, and what the whole track would then cost from the results' own times")
    p.add_argument("--plan-slopes", type=float, default=None, metavar="POINTS",
                   help="write nothing; print, per track, how many pretraining runs per subset the variance-vs-size "
                        "ablation would need for its difference of slopes (diversity − size) to have an interval of "
                        "±POINTS macro-F1 points per doubling, and what the added runs would cost")
    p.add_argument("--fraction", type=float, action="append", default=None, metavar="F",
                   help="with --plan: only these label fractions (repeatable; e.g. --fraction 0.01 --fraction 0.1)")
    p.add_argument("--protocol", action="append", default=None, metavar="NAME",
                   help="with --plan: only the Δs of these protocols set the runs (repeatable); the cost still "
                        "counts every protocol's jobs")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from leaderboard.regenerate import default_leaderboard
    from leaderboard.results import default_results_dir
    from protocols.spec import known_protocol_hashes, retired_protocol_hashes

    results_dir = args.results or default_results_dir()
    out_md = args.out or default_leaderboard(results_dir)
    known = known_protocol_hashes(args.protocols)
    if args.plan is not None or args.plan_slopes is not None:
        return _plan(results_dir, known, args.plan, args.fraction, args.protocol, args.plan_slopes)
    if args.check:
        return _check(results_dir, out_md, known, retired_protocol_hashes(args.protocols))
    from leaderboard.regenerate import regenerate, site_path

    path = regenerate(results_dir, out_md, known)
    print(f"wrote {path}, its figures in {path.parent / 'figures'} and {site_path(path)}")
    return 0


def _check(results_dir: Path, out_md: Path, known: dict[str, str], retired: dict[str, dict[str, int]]) -> int:
    """0 when `out_md` is what the results give and every result file validates; 1 otherwise."""
    from leaderboard.regenerate import blocking_problems, page_diff, site_difference, site_path

    status = 0
    problems = blocking_problems(results_dir, known, retired)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"sslbench leaderboard --check: {len(problems)} problem(s) in result files", file=sys.stderr)
        status = 1
    diff = page_diff(results_dir, out_md, known)
    if diff:
        sys.stdout.writelines(diff)
        print(f"sslbench leaderboard --check: {out_md} is not what the results give; run `make leaderboard` "
              "and commit it with the figures", file=sys.stderr)
        status = 1
    site = site_difference(results_dir, out_md, known)
    if site:
        print(f"sslbench leaderboard --check: {site}; run `make leaderboard` and commit "
              f"{site_path(out_md)}", file=sys.stderr)
        status = 1
    return status


def _plan(results_dir: Path, known: dict[str, str], points: float | None, fractions: list[float] | None,
          protocols: list[str] | None, slope_points: float | None) -> int:
    from benchmark.errors import UserError
    from leaderboard.load import load_results
    from leaderboard.plan import render_plan, render_slope_plan

    for flag, value in (("--plan", points), ("--plan-slopes", slope_points)):
        if value is not None and not 0 < value < 100:
            raise UserError(f"{flag} {value:g}: the half-width is in macro-F1 points, between 0 and 100 (e.g. {flag} 5)")
    results = load_results(results_dir)
    if points is not None:
        print(render_plan(results.main, known, points, fractions, protocols=protocols), end="")
    if slope_points is not None:
        print(render_slope_plan(results.ablation, slope_points), end="")
    return 0
