"""`sslbench run`: the downstream grid only (no pretraining), shardable across processes/GPUs.

SSL inits use the checkpoints that `sslbench bench` / `sslbench pretrain` made for this track (or
explicit `--checkpoint NAME=PATH`); a missing one is an error naming the command that makes it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.cli.bench import add_track_arguments
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
    p.add_argument("--no-baselines", action="store_true", help="leave out the imagenet and random baselines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from benchmark.cli.bench import (
        TIME_LIMIT_EXIT,
        baseline_inits,
        parse_methods,
        pretrain_run,
        pretrain_seeds,
        run_grid,
        track_context,
    )
    from methods.registry import get_method
    from protocols.grid import checkpoint_init

    explicit = {}
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--checkpoint expects NAME=PATH, got {item!r}")
        explicit[name.strip()] = Path(path)
    methods, baselines = parse_methods(args.method, baselines=not args.no_baselines)
    methods = [m for m in methods if m not in explicit]
    ctx = track_context(args, need_pretrain_data=bool(methods) or "random" in baselines)
    downstream = ctx.downstream_cache()
    inits = []
    pool = ctx.pretrain_cache() if methods or "random" in baselines else None
    if methods:
        missing = []
        for m in methods:
            for seed in pretrain_seeds(ctx):
                ckpt = pretrain_run(ctx, m, pool, seed)[2]
                if ckpt.exists():
                    inits.append(checkpoint_init(m, ckpt, seed, family=get_method(m).family))
                else:
                    missing.append(f"{m} (pretraining seed {seed})")
        if missing:
            raise UserError(f"no checkpoint on track {ctx.track.id} for {', '.join(missing)}: pretrain first "
                            f"with `sslbench bench --method {','.join(dict.fromkeys(m.split()[0] for m in missing))} "
                            f"--preset {ctx.preset_name}` (or pass --checkpoint NAME=PATH)")
    for name, path in explicit.items():
        inits.append(explicit_checkpoint_init(name, path, pretrain_seeds(ctx)))
    inits += [init for b in baselines for init in baseline_inits(ctx, b, pool)]
    summary = run_grid(ctx, inits, downstream, args)
    return TIME_LIMIT_EXIT if summary.stopped else 0


def explicit_checkpoint_init(name: str, path: Path, seeds: list[int]):
    """A checkpoint given by path: its pretraining seed is the one its metadata records, which must be
    one of the protocols' pretraining seeds (its results pair with those of that seed)."""
    from benchmark.checkpoint import read_meta
    from methods.registry import get_method
    from protocols.grid import checkpoint_init

    if not Path(path).exists():
        raise UserError(f"--checkpoint {path} does not exist")
    seed = read_meta(Path(path)).get("seed", 0)
    if seed not in seeds:
        raise UserError(f"{path} was pretrained with seed {seed}, which is not among the protocols' pretraining "
                        f"seeds {seeds}; its results would pair with no other init's")
    family = None
    try:
        family = get_method(name).family
    except UserError:
        pass  # a checkpoint under a name of the user's choosing
    return checkpoint_init(name, Path(path), seed, family=family)
