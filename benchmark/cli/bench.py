"""`sslbench bench`: pretrain a method (if not done), evaluate it with every protocol × label
fraction × seed, alongside the `imagenet` and `random` baselines of the same track, and refresh
the leaderboard (benchmark.track.bench)."""
from __future__ import annotations

import argparse

from benchmark.cli.common import add_start_argument, add_track_arguments, track_context_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "bench", help="pretrain a method and evaluate it with every protocol (the main command)",
        description="Pretrain METHOD on the preset's pretraining data (skipped when its checkpoint "
                    "exists), evaluate it with every protocol × label fraction × seed, run the imagenet "
                    "and random baselines of the same track where their results are missing, and "
                    "refresh the leaderboard. Finished jobs are never rerun; a killed run resumes. "
                    "With --shard, every shard first pretrains the --method methods (a finished "
                    "checkpoint is reused): when shards run at the same time, pretrain once first "
                    "(`sslbench bench` without --shard, or `sslbench pretrain`), then spread the "
                    "downstream grid with `sslbench run --shard i/N`.")
    p.add_argument("--method", required=True,
                   help="an SSL method (see `sslbench methods`), `all` (every method + the baselines), "
                        "`imagenet` or `random` (one baseline); several: comma-separated")
    add_track_arguments(p)
    add_start_argument(p)
    p.add_argument("--no-baselines", action="store_true",
                   help="do not run the imagenet and random baselines alongside the method")
    p.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard at the end")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from benchmark import track
    from benchmark.runner import TIME_LIMIT_EXIT, parse_shard

    methods, baselines = track.parse_methods(args.method, baselines=not args.no_baselines)
    shard = parse_shard(args.shard)
    ctx = track_context_from_args(args, need_pretrain_data=bool(methods) or "random" in baselines)
    stopped = track.bench(ctx, methods, baselines, force=args.force, shard=shard, deadline=args.time_limit,
                          leaderboard=not args.no_leaderboard)
    return TIME_LIMIT_EXIT if stopped else 0
