"""`sslbench session`: one time-boxed run on a machine held for a limited time — the device check,
then as much of a track's grid as fits, everything in one folder (benchmark.session)."""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import add_start_argument, parse_duration, time_limit


def register(sub) -> None:
    p = sub.add_parser(
        "session", help="time-boxed run: device check, then as much of a track's grid as fits",
        description="For a machine held for a limited time (e.g. one GPU for 10 minutes): run `sslbench "
                    "doctor`, then the grid one init at a time (an SSL method's pretraining and its jobs, or "
                    "a baseline's jobs; baselines first), starting the next only if it is expected to end "
                    "before --time-limit, and write doctor table, results, logs, left-over checkpoints and a "
                    "summary into --out. Started from the finished results of --from-results, it runs what "
                    "is missing. Exit status 0 when every planned job is done, 75 when time ran out first, "
                    "1 when a step failed.")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="everything the session writes")
    p.add_argument("--method", default="all", help="SSL method(s) and baselines, as for `sslbench bench` (default: all)")
    p.add_argument("--no-baselines", action="store_true", help="leave out the imagenet and random baselines")
    p.add_argument("--preset", default="auto", help="smoke | cpu | cpu-v3 | real | standard | paper | auto | a preset .toml")
    p.add_argument("--protocol", action="append", default=None, metavar="NAME",
                   help="only this protocol (repeatable; default: all)")
    p.add_argument("--time-limit", type=time_limit, default=None, metavar="DURATION",
                   help="the session's length from its start, e.g. 9m (default: no limit)")
    p.add_argument("--margin", type=parse_duration, default=30.0, metavar="DURATION",
                   help="time kept free at the end for the summary and a late step (default 30s)")
    p.add_argument("--no-doctor", action="store_true", help="skip the device check (e.g. in a second session)")
    p.add_argument("--doctor-timeout", type=parse_duration, default=300.0, metavar="DURATION",
                   help="stop the device check after this long (default 5m)")
    p.add_argument("--doctor-arg", action="append", default=[], metavar="ARG",
                   help="pass ARG to `sslbench doctor` (repeatable, e.g. --doctor-arg=--only=ddp)")
    p.add_argument("--from-results", type=Path, default=None, metavar="DIR",
                   help="finished results to start from, copied into OUT/results (default: leaderboard/results)")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="pretraining runs and features (default: runs/ or $SSLBENCH_RUNS_DIR); checkpoints "
                        "carried from an earlier session go here")
    p.add_argument("--cache-dir", default=None, help="frame cache folder (default: $SSLBENCH_CACHE_DIR or ~/.cache/sslbench)")
    add_start_argument(p)
    p.set_defaults(func=_session)


def _session(args: argparse.Namespace) -> int:
    from benchmark.session import SessionSettings, run_session

    return run_session(SessionSettings(
        out=args.out, preset=args.preset, methods=args.method, baselines=not args.no_baselines, protocols=args.protocol,
        deadline=args.time_limit, margin=args.margin, doctor=not args.no_doctor, doctor_timeout=args.doctor_timeout,
        doctor_args=tuple(args.doctor_arg), from_results=args.from_results, runs_dir=args.runs_dir,
        cache_dir=args.cache_dir, start=args.start))
