"""`sslbench ablation variance-vs-size`: does a diverse pretraining video set beat a merely larger one?"""
from __future__ import annotations

import argparse
import sys
import time


def register(sub) -> None:
    from benchmark.cli.bench import add_track_arguments

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
    from benchmark.cli.bench import (
        TIME_LIMIT_EXIT,
        out_of_time,
        parse_methods,
        refresh_leaderboard,
        track_context,
    )
    from benchmark.runner import parse_shard, run_jobs, select_shard
    from methods.registry import get_method
    from protocols import variance_vs_size as vvs
    from protocols.grid import checkpoint_init
    from protocols.spec import load_protocol

    ctx = track_context(args)
    spec = load_protocol(vvs.NAME, ctx.preset["protocols"].get(vvs.NAME))
    methods, _ = parse_methods(args.method or ",".join(spec.settings["methods"]), baselines=False)
    evals = [e for e in vvs.eval_protocols(spec, ctx.preset["protocols"])
             if not args.protocol or e.name in args.protocol]
    pool, downstream = ctx.pretrain_cache(), ctx.downstream_cache()
    units = [(m, s, ps) for m in methods for s in vvs.subsets(spec, pool) for ps in spec.settings["pretrain_seeds"]]
    shard = parse_shard(args.shard)
    mine = select_shard(units, shard)
    where = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    print(f"{vvs.NAME} on {ctx.track.id}{where}: {len(mine)} of {len(units)} (method, subset, pretraining seed) "
          f"units, {len(evals)} protocols × {len(spec.settings['seeds'])} seeds each", file=sys.stderr, flush=True)
    run_dir = ctx.runs_dir / "ablation" / ctx.track.id
    done, longest, stopped = 0, 0.0, False
    for method, subset, seed in mine:
        if out_of_time(args.time_limit, longest, f"start {method} {subset.tag} (pretraining seed {seed})"):
            stopped = True
            break
        started = time.perf_counter()
        ckpt = vvs.pretrain_subset(ctx.preset["pretrain"], method, spec, subset, pool, run_dir, seed)
        init = checkpoint_init(method, ckpt, seed, family=get_method(method).family)
        jobs = vvs.ablation_jobs(spec, method, subset, init, evals, ctx.track, downstream, pool.fingerprint,
                                 ctx.results_dir, ctx.runs_dir)
        summary = run_jobs(jobs, force=args.force, title=f"{method} {subset.tag} pretrain-seed{seed}",
                           deadline=args.time_limit)
        done += len(summary.done)
        longest = max(longest, time.perf_counter() - started)
        if summary.stopped:
            stopped = True
            break
    print(f"{vvs.NAME}: {done} runs written under {ctx.results_dir / ctx.track.id}", file=sys.stderr)
    if not args.no_leaderboard:
        refresh_leaderboard(ctx.results_dir)
    return TIME_LIMIT_EXIT if stopped else 0
