"""`sslbench evaluate`: one init (a checkpoint file, or a baseline) through one or more protocols
(benchmark.track.evaluate)."""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.common import add_track_arguments, track_context_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate one checkpoint or baseline with a protocol",
        description="Run a protocol (every label fraction × seed, or those given) for one init: an "
                    "encoder checkpoint or the imagenet/random baseline, on the preset's downstream data.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", type=Path, help="an encoder checkpoint (from `sslbench pretrain`)")
    which.add_argument("--init", choices=["imagenet", "random"], help="a baseline init")
    p.add_argument("--name", default=None,
                   help="the init's name in the results (default: the checkpoint's method)")
    p.add_argument("--fraction", type=float, action="append", default=None,
                   help="label fraction(s) to run (default: the protocol's: 0.01, 0.1, 1.0)")
    p.add_argument("--seed", type=int, action="append", default=None,
                   help="seed(s) to run (default: the protocol's: 0-4)")
    add_track_arguments(p)
    p.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from benchmark import track
    from benchmark.runner import TIME_LIMIT_EXIT, parse_shard

    shard = parse_shard(args.shard)
    ctx = track_context_from_args(args, need_pretrain_data=args.init == "random")
    stopped = track.evaluate(ctx, checkpoint=args.checkpoint, name=args.name, baseline=args.init,
                             fractions=args.fraction, seeds=args.seed, force=args.force, shard=shard,
                             deadline=args.time_limit)
    return TIME_LIMIT_EXIT if stopped else 0
