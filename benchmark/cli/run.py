"""`sslbench run`: the downstream grid only (no pretraining), shardable across processes/GPUs.

SSL inits use the checkpoints that `sslbench bench` / `sslbench pretrain` made for this track (or
explicit `--checkpoint NAME=PATH`); a missing one is an error naming the command that makes it
(benchmark.track.run_existing).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import add_start_argument, add_track_arguments, track_context_from_args
from benchmark.errors import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="run the downstream grid (or one shard of it) on existing checkpoints",
        description="Evaluate existing checkpoints and the baselines with every protocol × label "
                    "fraction × seed. `--shard i/N` runs every N-th job, so N processes (e.g. a SLURM "
                    "array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT) share the grid "
                    "and meet in one results folder. Finished jobs are skipped.")
    p.add_argument("--method", default="all",
                   help="SSL method(s), `all`, `imagenet` or `random` (comma-separated; default: all)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="evaluate this checkpoint as init NAME instead of the track's pretraining run")
    add_track_arguments(p)
    add_start_argument(p)
    p.add_argument("--no-baselines", action="store_true", help="leave out the imagenet and random baselines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from benchmark import track
    from benchmark.runner import TIME_LIMIT_EXIT, parse_shard

    explicit = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--checkpoint expects NAME=PATH, got {item!r}")
        explicit[name.strip()] = Path(path)
    methods, baselines = track.parse_methods(args.method, baselines=not args.no_baselines)
    shard = parse_shard(args.shard)
    pretrained = [m for m in methods if m not in explicit]
    ctx = track_context_from_args(args, need_pretrain_data=bool(pretrained) or "random" in baselines)
    stopped = track.run_existing(ctx, methods, baselines, explicit, force=args.force, shard=shard,
                                 deadline=args.time_limit)
    return TIME_LIMIT_EXIT if stopped else 0
