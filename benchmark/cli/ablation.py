"""`sslbench ablation variance-vs-size`: does a diverse pretraining video set beat a merely larger one?
(benchmark.track.variance_vs_size)"""
from __future__ import annotations

import argparse

from benchmark.cli.common import add_track_arguments, track_context_from_args


def register(sub) -> None:
    p = sub.add_parser("ablation", help="run an ablation protocol (variance-vs-size)",
                       description="Ablations of the pretraining data, run with the same job keys, resume "
                                   "and sharding as the main grid; results go to the results folder and "
                                   "`sslbench leaderboard` adds their section.")
    asub = p.add_subparsers(dest="ablation", metavar="ABLATION")
    asub.required = True
    v = asub.add_parser(
        "variance-vs-size", help="pretraining subsets: few vs many subjects at equal frames, and growing frames",
        description="Draw pretraining subsets from the pool along two axes (protocols/variance_vs_size.toml): "
                    "diversity (few → many subjects at a fixed frame budget) and size (a growing frame budget "
                    "at fixed subjects); pretrain each for the same number of steps and evaluate it with the "
                    "linear probe and fine-tuning at 1 %% labels over the protocol's seeds. With --shard i/N "
                    "each shard takes every N-th (method, subset, pretraining seed) unit: its pretraining and its "
                    "evaluations.")
    v.add_argument("--method", default=None,
                   help="SSL method(s), comma-separated (default: the protocol's, barlowtwins and simclr)")
    add_track_arguments(v)
    v.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard at the end")
    v.set_defaults(func=_variance_vs_size)


def _variance_vs_size(args: argparse.Namespace) -> int:
    from benchmark import track
    from benchmark.runner import TIME_LIMIT_EXIT, parse_shard

    shard = parse_shard(args.shard)
    ctx = track_context_from_args(args)
    stopped = track.variance_vs_size(ctx, args.method, args.protocol, force=args.force, shard=shard,
                                     deadline=args.time_limit, leaderboard=not args.no_leaderboard)
    return TIME_LIMIT_EXIT if stopped else 0
