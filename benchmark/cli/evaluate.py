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
    from benchmark.cli.bench import TIME_LIMIT_EXIT, run_grid, track_context
    from protocols.grid import baseline_init, ssl_init

    ctx = track_context(args, need_pretrain_data=False)
    if args.checkpoint is not None:
        if not args.checkpoint.exists():
            raise UserError(f"--checkpoint {args.checkpoint} does not exist")
        from benchmark.checkpoint import load_encoder

        _enc, meta = load_encoder(args.checkpoint)
        name = args.name or meta.get("method")
        if not name:
            raise UserError(f"{args.checkpoint} does not say which method made it; pass --name")
        family = None
        try:
            from methods.registry import get_method

            family = get_method(name).family
        except UserError:
            pass
        init = ssl_init(name, args.checkpoint, family=family)
        if init.backbone != ctx.preset["backbone"]:
            raise UserError(f"{args.checkpoint} holds a {init.backbone} encoder but track {ctx.track.id} is "
                            f"for {ctx.preset['backbone']}; choose the preset that matches")
    else:
        init = baseline_init(args.init, ctx.preset["backbone"])
    for spec in ctx.protocols:
        _restrict(spec, "fractions", args.fraction)
        _restrict(spec, "seeds", args.seed)
    summary = run_grid(ctx, [init], ctx.downstream_cache(), args, None)
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
