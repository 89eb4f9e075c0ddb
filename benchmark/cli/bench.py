"""`sslbench bench`: pretrain a method (if not done), evaluate it with every protocol × label
fraction × seed, alongside the `imagenet` and `random` baselines of the same track, and refresh
the leaderboard. Also home of the set-up that `sslbench run` and `sslbench evaluate` share."""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmark.cli.common import add_cache_argument, time_limit
from benchmark.errors import UserError

# Exit status when --time-limit stopped the work before the end: EX_TEMPFAIL of sysexits.h (a
# temporary condition; run the same command again to continue), for schedulers that requeue.
TIME_LIMIT_EXIT = 75

# Set before torch loads (subcommands import it lazily): OpenMP threads that spin while waiting
# slowed a CPU fine-tune step ~20× on a loaded 2-core machine (measured 2 vs 38 img/s); sleeping
# waiters cost nothing measurable when the machine is idle. The user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
    p.add_argument("--no-baselines", action="store_true",
                   help="do not run the imagenet and random baselines alongside the method")
    p.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the leaderboard at the end")
    p.set_defaults(func=_bench)


def add_track_arguments(p: argparse.ArgumentParser, *, grid: bool = True) -> None:
    p.add_argument("--preset", default="auto",
                   help="smoke | standard | paper | auto (standard on a GPU, smoke on a CPU) | a preset .toml")
    p.add_argument("--dataset", default=None, metavar="SPEC",
                   help="pretraining data instead of the preset's (e.g. videos:/data/clips); also the "
                        "downstream data when the source has labels, unless --downstream is given")
    p.add_argument("--downstream", default=None, metavar="SPEC",
                   help="labelled downstream data instead of the preset's (e.g. fetal_planes_db:/data/fpdb)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="a source setting for --dataset/--downstream (e.g. -o stride=5)")
    p.add_argument("--protocol", action="append", default=None, metavar="NAME",
                   help="run only this protocol (linear_probe, finetune; repeatable; default: all)")
    if grid:
        p.add_argument("--force", action="store_true", help="rerun jobs whose results exist")
        p.add_argument("--shard", default=None, metavar="i/N",
                       help="run every N-th job starting at i (0 <= i < N), for SLURM arrays or any "
                            "scheduler; all shards write into one results folder")
        p.add_argument("--time-limit", type=time_limit, default=None, metavar="DURATION",
                       help="e.g. 50m, 1h30m, 600: start no pretraining or job that is not expected to "
                            "end within this time from now (expected = the longest so far), then exit "
                            f"with status {TIME_LIMIT_EXIT}; finished work is kept, the same command continues")
    p.add_argument("--results-dir", type=Path, default=None,
                   help="where result files go (default: leaderboard/results or $SSLBENCH_RESULTS_DIR)")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="pretraining runs, cached features and fine-tune states "
                        "(default: runs/ or $SSLBENCH_RUNS_DIR)")
    add_cache_argument(p)


@dataclass
class TrackContext:
    preset_name: str
    preset: dict
    track: object  # protocols.grid.Track
    pretrain_source: object
    downstream_source: object
    protocols: list
    results_dir: Path
    runs_dir: Path
    cache_dir: str | None

    def downstream_cache(self):
        from benchmark.data.cache import prepare

        return prepare(self.downstream_source, "downstream", cache_dir=self.cache_dir)

    def pretrain_cache(self):
        from benchmark.data.cache import prepare

        return prepare(self.pretrain_source, "pretrain", cache_dir=self.cache_dir)


def track_context(args: argparse.Namespace, *, need_pretrain_data: bool = True) -> TrackContext:
    """Preset → sources, track, protocols and folders; fails early on bad input or an unwritable
    results folder, before any work."""
    from benchmark.cli.common import dataset_options
    from benchmark.data.spec import parse_dataset_spec
    from benchmark.folders import default_runs_dir, ensure_writable
    from leaderboard.results import default_results_dir
    from protocols.grid import make_track
    from protocols.presets import load_preset, resolve_preset
    from protocols.spec import PROTOCOLS, load_protocol

    preset_name = resolve_preset(args.preset)
    preset = load_preset(preset_name)
    extra = {k: v for k, v in dataset_options(args).items() if v is not None}
    res = preset["resolution"]

    data = preset["data"]
    shared = data["pretrain"]["spec"] == data["downstream"]["spec"]

    def source(role: str, spec: str | None):
        if spec is None:  # the preset's data, with its settings (e.g. the simulator's size)
            # One source serving both roles gets both tables' settings, so both caches see one config.
            opts = {**data["pretrain"].get("options", {}), **data["downstream"].get("options", {})} \
                if shared else data[role].get("options", {})
            return parse_dataset_spec(data[role]["spec"], **{**opts, **extra, "resolution": res})
        return parse_dataset_spec(spec, **{**extra, "resolution": res})

    pre = source("pretrain", args.dataset) if need_pretrain_data or args.dataset else None
    down_spec = args.downstream
    if down_spec is None and args.dataset is not None and pre is not None and "downstream" in pre.roles:
        down_spec = args.dataset
    down = source("downstream", down_spec)
    pre_spec = pre.spec if pre is not None else (args.dataset or preset["data"]["pretrain"]["spec"])
    track = make_track(pre_spec, down.spec, preset["backbone"], res, preset["name"])

    names = args.protocol or list(PROTOCOLS)
    protocols = [load_protocol(n, preset["protocols"].get(n)) for n in dict.fromkeys(names)]
    results_dir = Path(args.results_dir) if args.results_dir else default_results_dir()
    ensure_writable(results_dir)
    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    ensure_writable(runs_dir, what="runs folder", flag="--runs-dir")
    return TrackContext(preset_name=preset_name, preset=preset, track=track, pretrain_source=pre,
                        downstream_source=down, protocols=protocols, results_dir=results_dir,
                        runs_dir=runs_dir, cache_dir=args.cache_dir)


def parse_methods(text: str, *, baselines: bool) -> tuple[list[str], list[str]]:
    """`--method` → (SSL methods, baselines to run)."""
    from methods.registry import available_methods, get_method
    from protocols.grid import BASELINES

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--method needs a method name, `all`, `imagenet` or `random`")
    methods, base = [], []
    for name in names:
        if name == "all":
            methods += list(available_methods())
            base += list(BASELINES)
        elif name in BASELINES:
            base.append(name)
        else:
            get_method(name)  # unknown → UserError listing the known names
            methods.append(name)
    if methods and baselines:
        base += list(BASELINES)
    return list(dict.fromkeys(methods)), list(dict.fromkeys(base))


def pretrain_seeds(ctx: TrackContext) -> list[int]:
    """The pretraining seeds the track's protocols run (each SSL method is pretrained once per seed)."""
    return sorted({ps for spec in ctx.protocols for ps in spec.pretrain_seeds})


def pretrain_run(ctx: TrackContext, method: str, pool, seed: int) -> tuple[object, Path, Path]:
    """(PretrainConfig, the run folder given to `pretrain`, the final checkpoint it makes there)."""
    from benchmark.pretrain.config import PretrainConfig
    from benchmark.pretrain.run import FINAL_NAME, run_folder

    cfg = PretrainConfig.from_dict({"method": method, **ctx.preset["pretrain"], "seed": seed}).validate()
    run_dir = ctx.runs_dir / "pretrain" / ctx.track.id
    return cfg, run_dir, run_folder(cfg, cfg.key(pool.fingerprint), run_dir) / FINAL_NAME


def pretrained_init(ctx: TrackContext, method: str, pool, seed: int, progress: bool = True):
    """The checkpoint of `method` with pretraining seed `seed` on this track: pretrained now unless it exists."""
    from benchmark.pretrain.run import pretrain
    from methods.registry import get_method
    from protocols.grid import checkpoint_init

    cfg, run_dir, final = pretrain_run(ctx, method, pool, seed)
    if progress and not final.exists():
        print(f"pretraining {method} (pretraining seed {seed}, {cfg.steps} steps) on {ctx.track.id} "
              f"({final.parent})", file=sys.stderr, flush=True)
    checkpoint = pretrain(cfg, pool, run_dir, progress=progress)
    return checkpoint_init(method, checkpoint, seed, family=get_method(method).family)


def baseline_inits(ctx: TrackContext, name: str, pool, progress: bool = True) -> list:
    """The baseline `name` in every pretraining-seed block: imagenet's weights in each; for random, the
    random network of that seed with BatchNorm statistics estimated on the pool (made once, keyed)."""
    from benchmark.pretrain.run import random_baseline
    from protocols.grid import checkpoint_init, imagenet_init

    backbone = ctx.preset["backbone"]
    if name == "imagenet":
        return [imagenet_init(backbone, seed) for seed in pretrain_seeds(ctx)]
    run_dir = ctx.runs_dir / "pretrain" / ctx.track.id
    return [checkpoint_init("random", random_baseline(backbone, ctx.preset["resolution"], seed, pool, run_dir,
                                                      progress=progress), seed, kind="baseline")
            for seed in pretrain_seeds(ctx)]


def run_grid(ctx: TrackContext, inits: list, downstream, args: argparse.Namespace):
    from benchmark.runner import parse_shard, run_jobs
    from protocols.grid import build_grid, runner_jobs

    shard = parse_shard(getattr(args, "shard", None))
    grid = build_grid(inits, ctx.protocols, ctx.track, downstream, ctx.results_dir)
    jobs = runner_jobs(grid, downstream, ctx.runs_dir)
    summary = run_jobs(jobs, force=getattr(args, "force", False), shard=shard,
                       title=f"{ctx.track.id}", deadline=getattr(args, "time_limit", None))
    print(f"{ctx.track.id}: {len(summary.done)} jobs run in {summary.seconds:.0f} s, "
          f"{summary.skipped} already finished; results in {ctx.results_dir / ctx.track.id}", file=sys.stderr)
    return summary


def out_of_time(deadline, expected_s: float, what: str) -> bool:
    """True (and says so) when `deadline` (a runner.Deadline, or None) leaves no time for `what`."""
    if deadline is None or deadline.allows(expected_s):
        return False
    print(f"time limit: {deadline.left():.0f} s left, not enough to {what} (expected {expected_s:.0f} s, the "
          "longest so far); finished work is kept, run the same command again to continue",
          file=sys.stderr, flush=True)
    return True


def refresh_leaderboard(results_dir: Path) -> None:
    """Regenerate the LEADERBOARD.md beside `results_dir` (and its figures)."""
    from leaderboard.regenerate import default_leaderboard, regenerate
    from protocols.spec import known_protocol_hashes

    out = regenerate(Path(results_dir), default_leaderboard(results_dir), known_protocol_hashes())
    print(f"leaderboard: {out}", file=sys.stderr)


def _bench(args: argparse.Namespace) -> int:
    methods, baselines = parse_methods(args.method, baselines=not args.no_baselines)
    ctx = track_context(args, need_pretrain_data=bool(methods) or "random" in baselines)
    downstream = ctx.downstream_cache()
    pool = ctx.pretrain_cache() if methods or "random" in baselines else None
    inits, longest = [], 0.0
    for method in methods:
        for seed in pretrain_seeds(ctx):
            if out_of_time(args.time_limit, longest, f"pretrain {method} (pretraining seed {seed})"):
                return TIME_LIMIT_EXIT
            started = time.perf_counter()
            inits.append(pretrained_init(ctx, method, pool, seed))
            longest = max(longest, time.perf_counter() - started)
    inits += [init for b in baselines for init in baseline_inits(ctx, b, pool)]
    summary = run_grid(ctx, inits, downstream, args)
    if not args.no_leaderboard:
        refresh_leaderboard(ctx.results_dir)
    return TIME_LIMIT_EXIT if summary.stopped else 0
