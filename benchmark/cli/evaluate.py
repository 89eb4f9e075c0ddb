"""`sslbench evaluate`: one init (a checkpoint file, or a baseline) through one or more protocols."""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.bench import add_track_arguments
from benchmark.errors import UserError


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
    from benchmark.cli.bench import TIME_LIMIT_EXIT, baseline_inits, pretrain_seeds, run_grid, track_context
    from benchmark.cli.run import explicit_checkpoint_init

    ctx = track_context(args, need_pretrain_data=args.init == "random")
    if args.checkpoint is not None:
        if not args.checkpoint.exists():
            raise UserError(f"--checkpoint {args.checkpoint} does not exist")
        from benchmark.checkpoint import read_meta

        name = args.name or read_meta(args.checkpoint).get("method")
        if not name:
            raise UserError(f"{args.checkpoint} does not say which method made it; pass --name")
        inits = [explicit_checkpoint_init(name, args.checkpoint, pretrain_seeds(ctx))]
        if inits[0].backbone != ctx.preset["backbone"]:
            raise UserError(f"{args.checkpoint} holds a {inits[0].backbone} encoder but track {ctx.track.id} is "
                            f"for {ctx.preset['backbone']}; choose the preset that matches")
    else:
        pool = ctx.pretrain_cache() if args.init == "random" else None
        inits = baseline_inits(ctx, args.init, pool)
    for spec in ctx.protocols:
        _restrict(spec, "fractions", args.fraction)
        _restrict(spec, "seeds", args.seed)
    summary = run_grid(ctx, inits, ctx.downstream_cache(), args)
    return TIME_LIMIT_EXIT if summary.stopped else 0


def _restrict(spec, key: str, values: list | None) -> None:
    """Run a subset of the protocol's fractions/seeds (the protocol itself, and its hash, are unchanged)."""
    if values is None:
        return
    allowed = spec.settings[key]
    bad = [v for v in values if v not in allowed]
    if bad:
        raise UserError(f"--{key[:-1]} {bad}: protocol {spec.name!r} defines {key} {allowed}")
    spec.settings[key] = list(values)
