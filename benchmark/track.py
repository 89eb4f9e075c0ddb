"""A track and what runs on it: its set-up (preset → data sources, track id, protocols, folders), the
inits of its grid (pretrained methods, baselines, existing or given checkpoints) and the runs that the
`bench`, `run`, `evaluate` and `ablation` commands make of them.

Every function fails early on bad input (an unknown method, an unwritable folder) before any work.
Heavy libraries (torch, lightning) are imported where they are used, so that setting up a track
stays cheap.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import UserError
from benchmark.runner import Deadline, RunSummary, out_of_time


@dataclass
class SourceSettings:
    """The settings given for one role's source: values (setting → value), how each was given on the
    command line (setting → flag, for messages) and the unreadable-file policy (None: the default)."""

    options: dict = field(default_factory=dict)
    flags: dict = field(default_factory=dict)
    on_error: str | None = None


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
    pretrain_on_error: str = "fail"
    downstream_on_error: str = "fail"
    replace_reference: bool = False
    # Where the SSL methods' pretraining starts (`--start`): None takes the preset's `[pretrain] start`
    # (random weights unless it says otherwise; protocols.presets.preset_start).
    start: str | None = None
    # The pool is the downstream data's train split, unlabelled (`--dataset downstream:train`,
    # benchmark.data.indomain): made from the downstream cache, with no source of its own.
    pool_of_downstream: bool = False
    _slots: object = field(default=None, init=False, repr=False, compare=False)

    @property
    def slots(self):
        """Where the track's jobs write (benchmark.reference): committed results of other keys are
        left as they are, and this run's go to `<runs>/results` instead (unless `replace_reference`)."""
        from benchmark.reference import ResultSlots

        if self._slots is None:
            self._slots = ResultSlots(self.results_dir, self.runs_dir / "results", replace=self.replace_reference)
        return self._slots

    def downstream_cache(self):
        from benchmark.data.cache import prepare, say_skipped

        return say_skipped(prepare(self.downstream_source, "downstream", cache_dir=self.cache_dir,
                                    on_error=self.downstream_on_error, on_error_flag="--downstream-on-error"))

    def pretrain_cache(self):
        from benchmark.data.cache import prepare, say_skipped

        if self.pool_of_downstream:
            from benchmark.data.indomain import train_split_pool

            return train_split_pool(self.downstream_cache())
        return say_skipped(prepare(self.pretrain_source, "pretrain", cache_dir=self.cache_dir,
                                    on_error=self.pretrain_on_error))

    @property
    def pretrain_dir(self) -> Path:
        """Where the track's pretraining runs (and its `random` baselines) are made."""
        return self.runs_dir / "pretrain" / self.track.id


def track_context(preset: str = "auto", *, dataset: str | None = None, downstream: str | None = None,
                  pretrain: SourceSettings | None = None,
                  downstream_settings: SourceSettings | None = None, protocols: list[str] | None = None,
                  results_dir: Path | None = None, runs_dir: Path | None = None, cache_dir: str | None = None,
                  need_pretrain_data: bool = True, track_name: str | None = None,
                  data_table: str | None = None, new_results: bool = True,
                  replace_reference: bool = False, start: str | None = None) -> TrackContext:
    """Preset → sources, track, protocols and folders; fails early on bad input or an unwritable
    results folder, before any work. `dataset`/`downstream` replace the preset's data; `pretrain` are
    the settings of the pretraining source (`--dataset`, or the preset's; they also reach its
    downstream role when one source serves both), `downstream_settings` those of the downstream source
    alone. `protocols` restricts the main protocols run; `track_name` replaces the track id made from
    the data, backbone, resolution and preset. `data_table`: an ablation whose `[data.<name>]` table of
    the preset adds settings to the preset's downstream source (the command line's still win).
    `new_results`: the command will write result files, so the code must be a git checkout (their
    provenance names its commit). `replace_reference`: write over committed results whose job keys
    differ (benchmark.reference) instead of beside them in the runs folder. `start`: where the SSL methods'
    pretraining starts (random | imagenet; default the preset's)."""
    from benchmark.data.indomain import SPEC as IN_DOMAIN_SPEC
    from benchmark.data.indomain import is_in_domain
    from benchmark.data.spec import parse_dataset_spec
    from benchmark.folders import default_runs_dir, ensure_writable
    from leaderboard.results import default_results_dir
    from protocols.grid import make_track
    from protocols.presets import load_preset, resolve_preset
    from protocols.spec import PROTOCOLS, load_protocol

    if new_results:
        from benchmark.provenance import require_git_checkout

        require_git_checkout()
    preset_name = resolve_preset(preset)
    preset = load_preset(preset_name)
    from protocols.presets import preset_start

    start = preset_start(preset, start)  # a bad value fails here, before any work
    pre_set = pretrain or SourceSettings()
    down_set = downstream_settings or SourceSettings()
    res = preset["resolution"]

    data = preset["data"]
    shared = data["pretrain"]["spec"] == data["downstream"]["spec"]

    def given(settings: SourceSettings) -> dict:
        return {k: v for k, v in settings.options.items() if v is not None}

    def source(role: str, spec: str | None, settings: dict, flags: dict, hint: str):
        if spec is None:  # the preset's data, with its settings (e.g. the simulator's size)
            # One source serving both roles gets both tables' settings, so both caches see one config.
            opts = {**data["pretrain"].get("options", {}), **data["downstream"].get("options", {})} \
                if shared else data[role].get("options", {})
            if role == "downstream" and data_table:
                opts = {**opts, **data.get(data_table, {}).get("options", {})}
            return parse_dataset_spec(data[role]["spec"], flags=flags, hint=hint,
                                      **{**opts, **settings, "resolution": res})
        return parse_dataset_spec(spec, flags=flags, hint=hint, **{**settings, "resolution": res})

    pre_hint = " (the pretraining source; settings of the downstream source go in -O KEY=VALUE)"
    down_hint = " (the downstream source; settings of the pretraining source go in -o KEY=VALUE or their own flags)"
    in_domain = is_in_domain(dataset if dataset is not None else data["pretrain"]["spec"])
    if in_domain and given(pre_set):
        raise UserError(f"--dataset {IN_DOMAIN_SPEC} (the downstream data's train split) takes no settings of its own, "
                        f"got {', '.join(pre_set.flags.get(k) or k for k in given(pre_set))}; the downstream "
                        "source's settings (-O KEY=VALUE) make its frames")
    pre = source("pretrain", dataset, given(pre_set), pre_set.flags, pre_hint) \
        if (need_pretrain_data or dataset) and not in_domain else None
    down_spec = downstream
    if down_spec is None and dataset is not None and pre is not None and "downstream" in pre.roles:
        down_spec = dataset
    # The pretraining source serves the downstream role too: the settings given for it apply there.
    one_source = downstream is None and (down_spec == dataset if dataset is not None else shared)
    down_opts = {**(given(pre_set) if one_source else {}), **given(down_set)}
    down = source("downstream", down_spec, down_opts, {**(pre_set.flags if one_source else {}), **down_set.flags},
                  down_hint)
    pre_spec = pre.spec if pre is not None else (dataset or preset["data"]["pretrain"]["spec"])
    track = make_track(pre_spec, down.spec, preset["backbone"], res, preset["name"], name=track_name,
                       cpu_memory_format=preset["cpu_memory_format"])

    names = protocols or list(PROTOCOLS)
    specs = [load_protocol(n, preset["protocols"].get(n)) for n in dict.fromkeys(names)]
    results_dir = Path(results_dir) if results_dir else default_results_dir()
    ensure_writable(results_dir)
    runs_dir = Path(runs_dir) if runs_dir else default_runs_dir()
    ensure_writable(runs_dir, what="runs folder", flag="--runs-dir")
    pre_error = pre_set.on_error or "fail"
    down_error = down_set.on_error or (pre_error if one_source else "fail")
    return TrackContext(preset_name=preset_name, preset=preset, track=track, pretrain_source=pre,
                        downstream_source=down, protocols=specs, results_dir=results_dir,
                        runs_dir=runs_dir, cache_dir=cache_dir, pretrain_on_error=pre_error,
                        downstream_on_error=down_error, replace_reference=replace_reference, start=start,
                        pool_of_downstream=in_domain)


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


def method_init_name(ctx: TrackContext, method: str) -> str:
    """The init (row, results folder) of `method` pretrained on this track from its start: the method's
    name from random weights, `<method>@imagenet` continued from ImageNet weights."""
    from leaderboard.results import continued_name
    from protocols.presets import preset_start

    return continued_name(method, preset_start(ctx.preset, ctx.start))


def start_flag(ctx: TrackContext) -> str:
    """The flag that selects this track's start on a command line ("" for random weights)."""
    from leaderboard.results import RANDOM_START
    from protocols.presets import preset_start

    start = preset_start(ctx.preset, ctx.start)
    return "" if start == RANDOM_START else f" --start {start}"


def pretrain_seeds(ctx: TrackContext) -> list[int]:
    """The pretraining seeds the track's protocols run (each SSL method is pretrained once per seed)."""
    return sorted({ps for spec in ctx.protocols for ps in spec.pretrain_seeds})


# ---------------------------------------------------------------------------------------- inits

def pretrain_run(ctx: TrackContext, method: str, pool, seed: int, steps: int | None = None,
                 recipe: dict | None = None, positives: str | None = None) -> tuple[object, Path, Path]:
    """(PretrainConfig, the run folder given to `pretrain`, the final checkpoint it makes there). `steps`:
    another budget than the preset's (the learning curve); `recipe`: from ImageNet's weights with these
    continued knobs instead of the preset's (the continued-recipe ablation); `positives`: positive pairs
    drawn otherwise than the preset's (the positives ablation). At the preset's own budget, recipe and
    positives it is the same run."""
    from benchmark.pretrain.config import PretrainConfig
    from benchmark.pretrain.run import FINAL_NAME, run_folder
    from leaderboard.results import IMAGENET_START
    from protocols.presets import pretrain_settings

    budget = {} if steps is None else {"steps": steps}
    if positives is not None:
        budget["positives"] = positives
    start = IMAGENET_START if recipe is not None else ctx.start
    cfg = PretrainConfig.from_dict({"method": method, **pretrain_settings(ctx.preset, method, start, recipe),
                                    "seed": seed, **budget}).validate()
    return cfg, ctx.pretrain_dir, run_folder(cfg, cfg.key(pool.fingerprint), ctx.pretrain_dir) / FINAL_NAME


def pretrained_init(ctx: TrackContext, method: str, pool, seed: int, progress: bool = True):
    """The checkpoint of `method` with pretraining seed `seed` on this track: pretrained now unless it exists."""
    from benchmark.pretrain.run import pretrain
    from methods.registry import get_method
    from protocols.grid import checkpoint_init

    cfg, run_dir, final = pretrain_run(ctx, method, pool, seed)
    name = method_init_name(ctx, method)
    if progress and not final.exists():
        print(f"pretraining {name} (pretraining seed {seed}, {cfg.steps} steps) on {ctx.track.id} "
              f"({final.parent})", file=sys.stderr, flush=True)
    checkpoint = pretrain(cfg, pool, run_dir, progress=progress)
    return checkpoint_init(name, checkpoint, seed, family=get_method(method).family)


def baseline_inits(ctx: TrackContext, name: str, pool, progress: bool = True) -> list:
    """The baseline `name` in every pretraining-seed block: imagenet's weights in each; for random, the
    random network of that seed with BatchNorm statistics estimated on the pool (made once, keyed)."""
    from benchmark.pretrain.finish import random_baseline
    from protocols.grid import checkpoint_init, imagenet_init

    backbone = ctx.preset["backbone"]
    if name == "imagenet":
        return [imagenet_init(backbone, seed) for seed in pretrain_seeds(ctx)]
    return [checkpoint_init("random", random_baseline(backbone, ctx.preset["resolution"], seed, pool,
                                                      ctx.pretrain_dir, progress=progress), seed, kind="baseline")
            for seed in pretrain_seeds(ctx)]


def existing_inits(ctx: TrackContext, methods: list[str], pool) -> list:
    """The inits of the checkpoints that pretraining made for this track; a missing one is an error
    naming the command that makes it."""
    from methods.registry import get_method
    from protocols.grid import checkpoint_init

    inits, missing = [], []
    for m in methods:
        for seed in pretrain_seeds(ctx):
            ckpt = pretrain_run(ctx, m, pool, seed)[2]
            if ckpt.exists():
                inits.append(checkpoint_init(method_init_name(ctx, m), ckpt, seed, family=get_method(m).family))
            else:
                missing.append((m, f"{method_init_name(ctx, m)} (pretraining seed {seed})"))
    if missing:
        raise UserError(f"no checkpoint on track {ctx.track.id} for {', '.join(what for _, what in missing)}: "
                        f"pretrain first with `sslbench bench --method {','.join(dict.fromkeys(m for m, _ in missing))} "
                        f"--preset {ctx.preset_name}{start_flag(ctx)}` (or pass --checkpoint NAME=PATH)")
    return inits


def explicit_checkpoint_init(name: str, path: Path, seeds: list[int]):
    """A checkpoint given by path: its pretraining seed is the one its metadata records, which must be
    one of the protocols' pretraining seeds (its results pair with those of that seed)."""
    from benchmark.checkpoint import read_meta
    from leaderboard.results import RANDOM_START, START_MARK, init_method, init_start
    from methods.registry import get_method
    from protocols.grid import checkpoint_init

    if not Path(path).exists():
        raise UserError(f"--checkpoint {path} does not exist")
    meta = read_meta(Path(path))
    seed = meta.get("seed", 0)
    started = meta.get("init", RANDOM_START)
    if init_start(name) != started:
        hint = (f"name it {init_method(name)}{START_MARK}{started}" if started != RANDOM_START
                else f"leave {START_MARK}{init_start(name)} out of its name")
        raise UserError(f"{path} was pretrained from {started} weights, but the name {name!r} says "
                        f"{init_start(name)}: {hint} (the start is part of an init's name, its folder and its keys)")
    if seed not in seeds:
        raise UserError(f"{path} was pretrained with seed {seed}, which is not among the protocols' pretraining "
                        f"seeds {seeds}; its results would pair with no other init's")
    family = None
    try:
        family = get_method(init_method(name)).family
    except UserError:
        pass  # a checkpoint under a name of the user's choosing
    return checkpoint_init(name, Path(path), seed, family=family)


def checkpoint_file_init(ctx: TrackContext, path: Path, name: str | None = None):
    """The init of one checkpoint file, named `name` or after the method that made it; its backbone
    must be the track's."""
    from benchmark.checkpoint import read_meta
    from leaderboard.results import RANDOM_START, continued_name

    if not Path(path).exists():
        raise UserError(f"--checkpoint {path} does not exist")
    meta = read_meta(Path(path))
    if not name and meta.get("method"):  # a continued run is named after its method and start
        name = continued_name(meta["method"], meta.get("init", RANDOM_START))
    if not name:
        raise UserError(f"{path} does not say which method made it; pass --name")
    init = explicit_checkpoint_init(name, Path(path), pretrain_seeds(ctx))
    if init.backbone != ctx.preset["backbone"]:
        raise UserError(f"{path} holds a {init.backbone} encoder but track {ctx.track.id} is "
                        f"for {ctx.preset['backbone']}; choose the preset that matches")
    return init


def restrict(spec, key: str, values: list | None) -> None:
    """Run a subset of the protocol's fractions/seeds (the protocol itself, and its hash, are unchanged)."""
    if values is None:
        return
    allowed = spec.settings[key]
    bad = [v for v in values if v not in allowed]
    if bad:
        raise UserError(f"--{key[:-1]} {bad}: protocol {spec.name!r} defines {key} {allowed}")
    spec.settings[key] = list(values)


# ----------------------------------------------------------------------------------------- runs

def run_grid(ctx: TrackContext, inits: list, downstream, *, force: bool = False,
             shard: tuple[int, int] | None = None, deadline: Deadline | None = None, pool=None) -> RunSummary:
    """Every job of the track's protocols for `inits` (or the jobs of `shard`), skipping finished ones.
    `pool`: the pretraining cache the inits were made on, when it was loaded."""
    from benchmark.runner import run_jobs
    from protocols.grid import build_grid, runner_jobs

    grid = build_grid(inits, ctx.protocols, ctx.track, downstream, ctx.results_dir, pool=pool)
    jobs = runner_jobs(grid, downstream, ctx.runs_dir)
    summary = run_jobs(jobs, force=force, shard=shard, title=f"{ctx.track.id}", deadline=deadline, slots=ctx.slots)
    print(f"{ctx.track.id}: {len(summary.done)} jobs run in {summary.seconds:.0f} s, "
          f"{summary.skipped} already finished; results in {ctx.results_dir / ctx.track.id}", file=sys.stderr)
    say_reproduction(ctx)
    return summary


def say_reproduction(ctx: TrackContext) -> Path | None:
    """When this run's results differ from committed ones they were not written over, print the
    reproduction report (benchmark.reference) and keep it as REPRODUCTION.md beside those results;
    returns its path (None: nothing differed)."""
    from benchmark.device import default_device, machine_record
    from benchmark.reference import reproduction_report
    from leaderboard.atomic import atomic_write_text

    report = reproduction_report(ctx.slots, machine_record(default_device()))
    if not report:
        return None
    path = ctx.slots.local_dir / ctx.track.id / "REPRODUCTION.md"
    atomic_write_text(path, report)
    print(f"\n{report}\n(kept as {path})", file=sys.stderr, flush=True)
    return path


def refresh_leaderboard(results_dir: Path) -> None:
    """Regenerate the LEADERBOARD.md beside `results_dir` (and its figures)."""
    from leaderboard.regenerate import default_leaderboard, regenerate
    from protocols.spec import known_protocol_hashes

    out = regenerate(Path(results_dir), default_leaderboard(results_dir), known_protocol_hashes())
    print(f"leaderboard: {out}", file=sys.stderr)


def pretrained_inits(ctx: TrackContext, methods: list[str], baselines: list[str], pool,
                     deadline: Deadline | None = None) -> list | None:
    """The inits of `methods` (pretrained now where their checkpoint is missing, once per pretraining seed of
    the track's protocols) and of `baselines`; None when `deadline` stopped it."""
    inits, longest = [], 0.0
    for method in methods:
        for seed in pretrain_seeds(ctx):
            if out_of_time(deadline, longest, f"pretrain {method} (pretraining seed {seed})"):
                return None
            started = time.perf_counter()
            inits.append(pretrained_init(ctx, method, pool, seed))
            longest = max(longest, time.perf_counter() - started)
    return inits + [init for b in baselines for init in baseline_inits(ctx, b, pool)]


def bench(ctx: TrackContext, methods: list[str], baselines: list[str], *, force: bool = False,
          shard: tuple[int, int] | None = None, deadline: Deadline | None = None, leaderboard: bool = True) -> bool:
    """Pretrain `methods` (each once per pretraining seed, unless done), then run the grid of their
    checkpoints and of `baselines`, then refresh the leaderboard. True when `deadline` stopped it."""
    downstream = ctx.downstream_cache()
    pool = ctx.pretrain_cache() if methods or "random" in baselines else None
    inits = pretrained_inits(ctx, methods, baselines, pool, deadline)
    if inits is None:
        return True
    summary = run_grid(ctx, inits, downstream, force=force, shard=shard, deadline=deadline, pool=pool)
    if leaderboard:
        refresh_leaderboard(ctx.results_dir)
    return summary.stopped


def run_existing(ctx: TrackContext, methods: list[str], baselines: list[str], checkpoints: dict[str, Path], *,
                 force: bool = False, shard: tuple[int, int] | None = None,
                 deadline: Deadline | None = None) -> bool:
    """The grid of the checkpoints pretraining made for `methods`, of the given `checkpoints` (name →
    file) and of `baselines`; nothing is pretrained. True when `deadline` stopped it."""
    methods = [m for m in methods if m not in checkpoints]
    downstream = ctx.downstream_cache()
    pool = ctx.pretrain_cache() if methods or "random" in baselines else None
    inits = existing_inits(ctx, methods, pool) if methods else []
    inits += [explicit_checkpoint_init(name, path, pretrain_seeds(ctx)) for name, path in checkpoints.items()]
    inits += [init for b in baselines for init in baseline_inits(ctx, b, pool)]
    return run_grid(ctx, inits, downstream, force=force, shard=shard, deadline=deadline, pool=pool).stopped


def evaluate(ctx: TrackContext, *, checkpoint: Path | None = None, name: str | None = None,
             baseline: str | None = None, fractions: list[float] | None = None, seeds: list[int] | None = None,
             force: bool = False, shard: tuple[int, int] | None = None, deadline: Deadline | None = None) -> bool:
    """One init — a checkpoint file or a baseline — through the track's protocols, at all their label
    fractions and seeds or those given. True when `deadline` stopped it."""
    pool = None
    if checkpoint is not None:
        inits = [checkpoint_file_init(ctx, checkpoint, name)]
    else:
        pool = ctx.pretrain_cache() if baseline == "random" else None
        inits = baseline_inits(ctx, baseline, pool)
    for spec in ctx.protocols:
        restrict(spec, "fractions", fractions)
        restrict(spec, "seeds", seeds)
    return run_grid(ctx, inits, ctx.downstream_cache(), force=force, shard=shard, deadline=deadline,
                    pool=pool).stopped


def ablation_done(ctx: TrackContext, name: str, done: int, stopped: bool, leaderboard: bool) -> bool:
    """The end of an ablation's command: how many runs it wrote, how to reproduce them, the page refreshed
    (`leaderboard`); returns `stopped` (a deadline stopped it)."""
    print(f"{name}: {done} runs written under {ctx.results_dir / ctx.track.id}", file=sys.stderr)
    say_reproduction(ctx)
    if leaderboard:
        refresh_leaderboard(ctx.results_dir)
    return stopped


def variance_vs_size(ctx: TrackContext, methods: str | None = None, protocols: list[str] | None = None, *,
                     force: bool = False, shard: tuple[int, int] | None = None, deadline: Deadline | None = None,
                     leaderboard: bool = True) -> bool:
    """The variance-vs-size ablation on the track: for each (method, subset, pretraining seed) unit of
    `shard`, pretrain the method on the subset and evaluate it (`protocols`: only these evaluation
    protocols). `methods`: comma-separated, default the protocol's. True when `deadline` stopped it."""
    from benchmark.runner import run_jobs, select_shard
    from methods.registry import get_method
    from protocols import variance_vs_size as vvs
    from protocols.grid import checkpoint_init
    from protocols.presets import pretrain_settings
    from protocols.spec import load_protocol

    spec = load_protocol(vvs.NAME, ctx.preset["protocols"].get(vvs.NAME))
    methods, _ = parse_methods(methods or ",".join(spec.settings["methods"]), baselines=False)
    evals = [e for e in vvs.eval_protocols(spec, ctx.preset["protocols"]) if not protocols or e.name in protocols]
    pool, downstream = ctx.pretrain_cache(), ctx.downstream_cache()
    units = [(m, s, ps) for m in methods for s in vvs.subsets(spec, pool) for ps in spec.settings["pretrain_seeds"]]
    mine = select_shard(units, shard)
    where = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    print(f"{vvs.NAME} on {ctx.track.id}{where}: {len(mine)} of {len(units)} (method, subset, pretraining seed) "
          f"units, {len(evals)} protocols × {len(spec.settings['seeds'])} seeds each", file=sys.stderr, flush=True)
    run_dir = ctx.runs_dir / "ablation" / ctx.track.id
    done, longest, stopped = 0, 0.0, False
    for method, subset, seed in mine:
        if out_of_time(deadline, longest, f"start {method} {subset.tag} (pretraining seed {seed})"):
            stopped = True
            break
        started = time.perf_counter()
        ckpt = vvs.pretrain_subset(pretrain_settings(ctx.preset, method, ctx.start), method, spec, subset, pool,
                                   run_dir, seed)
        init = checkpoint_init(method_init_name(ctx, method), ckpt, seed, family=get_method(method).family)
        jobs = vvs.ablation_jobs(spec, method, subset, init, evals, ctx.track, downstream, pool.fingerprint,
                                 ctx.results_dir, ctx.runs_dir)
        summary = run_jobs(jobs, force=force, title=f"{method} {subset.tag} pretrain-seed{seed}", deadline=deadline,
                           slots=ctx.slots)
        done += len(summary.done)
        longest = max(longest, time.perf_counter() - started)
        if summary.stopped:
            stopped = True
            break
    return ablation_done(ctx, vvs.NAME, done, stopped, leaderboard)


def pretrain_and_evaluate(ctx: TrackContext, units: list, pool, describe, run_of, jobs_of, *, force: bool,
                          deadline: Deadline | None) -> tuple[int, bool]:
    """An ablation's units one after another: each unit's pretraining run (`run_of(unit)` → config, run folder,
    final checkpoint; made unless it exists), then its evaluation jobs (`jobs_of(unit, config, checkpoint)`),
    starting none that `deadline` would cut. (runs written, stopped by the deadline)."""
    from benchmark.pretrain.run import pretrain
    from benchmark.runner import run_jobs

    done, longest = 0, 0.0
    for unit in units:
        what = describe(unit)
        if out_of_time(deadline, longest, f"start {what}"):
            return done, True
        started = time.perf_counter()
        cfg, run_dir, final = run_of(unit)
        if not final.exists():
            print(f"pretraining {what} ({final.parent})", file=sys.stderr, flush=True)
        checkpoint = pretrain(cfg, pool, run_dir)
        summary = run_jobs(jobs_of(unit, cfg, checkpoint), force=force, title=what, deadline=deadline, slots=ctx.slots)
        done += len(summary.done)
        longest = max(longest, time.perf_counter() - started)
        if summary.stopped:
            return done, True
    return done, False


def ablation_units(ctx: TrackContext, module, methods: str | None, protocols: list[str] | None,
                   shard: tuple[int, int] | None, *, title: str, refusal, axis: str) -> tuple[object, list, list]:
    """What an ablation that pretrains SSL methods and evaluates their checkpoints runs on the track:
    (its protocol spec with the preset's overrides, its evaluation protocols, the units of `shard`).
    `module`: the ablation's protocol module (NAME, units, eval_protocols); `title`: how messages name it;
    `refusal(baselines)`: why it does not run a baseline; `axis`: what a unit is made of, for the summary
    line. Checked before any data is read: a bad --method or --protocol costs nothing."""
    from benchmark.runner import select_shard
    from protocols.spec import load_protocol

    spec = load_protocol(module.NAME, ctx.preset["protocols"].get(module.NAME))
    methods, baselines = parse_methods(methods or ",".join(spec.settings["methods"]), baselines=False)
    if baselines:
        raise UserError(f"--method {','.join(baselines)}: {refusal(baselines)}")
    evals = [e for e in module.eval_protocols(spec, ctx.preset["protocols"]) if not protocols or e.name in protocols]
    if not evals:
        raise UserError(f"--protocol {', '.join(protocols)}: {title} evaluates with "
                        f"{', '.join(spec.settings['eval_protocols'])} (eval_protocols of protocols/{module.NAME}.toml; "
                        f"a preset's [protocols.{module.NAME}] table may change it)")
    units = module.units(spec, methods)
    mine = select_shard(units, shard)
    where = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    sizes = [f"{len(evals)} protocols", *([f"{len(spec.settings['fractions'])} fractions"]
                                          if "fractions" in spec.settings else []), f"{len(spec.settings['seeds'])} seeds each"]
    print(f"{module.NAME} on {ctx.track.id}{where}: {len(mine)} of {len(units)} ({axis}) units, {' × '.join(sizes)}",
          file=sys.stderr, flush=True)
    return spec, evals, mine


def learning_curve(ctx: TrackContext, methods: str | None = None, protocols: list[str] | None = None, *,
                   force: bool = False, shard: tuple[int, int] | None = None, deadline: Deadline | None = None,
                   leaderboard: bool = True) -> bool:
    """The learning curve on the track: for each (method, budget, pretraining seed) unit of `shard`, pretrain
    the method on the whole pool for that many steps (unless its checkpoint exists: at the preset's own
    budget that is the main grid's) and evaluate it (`protocols`: only these evaluation protocols).
    `methods`: comma-separated, default the protocol's. True when `deadline` stopped it."""
    from methods.registry import get_method
    from protocols import learning_curve as lc
    from protocols.grid import checkpoint_init

    spec, evals, mine = ablation_units(
        ctx, lc, methods, protocols, shard, title="the learning curve", axis="method, budget, pretraining seed",
        refusal=lambda baselines: "the learning curve pretrains SSL methods; the imagenet and random baselines are "
                                  "its reference lines, taken from the track's main results (`sslbench bench --method "
                                  f"{','.join(baselines)} --preset {ctx.preset_name}`)")
    pool, downstream = ctx.pretrain_cache(), ctx.downstream_cache()

    def run_of(unit):
        return pretrain_run(ctx, unit.method, pool, unit.pretrain_seed, steps=unit.steps)

    def jobs_of(unit, cfg, checkpoint):
        init = checkpoint_init(method_init_name(ctx, unit.method), checkpoint, unit.pretrain_seed,
                               family=get_method(unit.method).family)
        return lc.curve_jobs(spec, unit, init, evals, ctx.track, downstream, pool, ctx.results_dir, ctx.runs_dir)

    done, stopped = pretrain_and_evaluate(ctx, mine, pool, lambda u: f"{u.method} {u.tag} (pretraining seed "
                                          f"{u.pretrain_seed})", run_of, jobs_of, force=force, deadline=deadline)
    return ablation_done(ctx, lc.NAME, done, stopped, leaderboard)


def continued_recipe(ctx: TrackContext, methods: str | None = None, protocols: list[str] | None = None, *,
                     force: bool = False, shard: tuple[int, int] | None = None, deadline: Deadline | None = None,
                     leaderboard: bool = True) -> bool:
    """The continued-recipe ablation on the track: for each (method, recipe, pretraining seed) unit of `shard`,
    continue the method from ImageNet's weights with the recipe (unless its checkpoint exists: for the
    preset's own recipe that is the main grid's) and evaluate it (`protocols`: only these evaluation
    protocols). `methods`: comma-separated, default the protocol's. True when `deadline` stopped it."""
    from benchmark.checkpoint import read_meta
    from leaderboard.results import IMAGENET_START, continued_name
    from methods.registry import get_method
    from protocols import continued_recipe as cr
    from protocols.grid import checkpoint_init

    spec, evals, mine = ablation_units(
        ctx, cr, methods, protocols, shard, title="the continued-recipe ablation",
        axis="method, recipe, pretraining seed",
        refusal=lambda baselines: "the continued-recipe ablation continues SSL methods from ImageNet's weights; the "
                                  "baselines are not pretrained")
    pool, downstream = ctx.pretrain_cache(), ctx.downstream_cache()

    def run_of(unit):
        return pretrain_run(ctx, unit.method, pool, unit.pretrain_seed, recipe=unit.knobs)

    def jobs_of(unit, cfg, checkpoint):
        recipe = read_meta(checkpoint)["continued"]["recipe"]  # every knob the run continued with
        init = checkpoint_init(continued_name(unit.method, cfg.init), checkpoint, unit.pretrain_seed,
                               family=get_method(unit.method).family)
        return cr.recipe_jobs(spec, unit, recipe, init, evals, ctx.track, downstream, pool, ctx.results_dir,
                              ctx.runs_dir)

    done, stopped = pretrain_and_evaluate(ctx, mine, pool, lambda u: f"{continued_name(u.method, IMAGENET_START)} "
                                          f"{u.tag} (pretraining seed {u.pretrain_seed})", run_of, jobs_of,
                                          force=force, deadline=deadline)
    return ablation_done(ctx, cr.NAME, done, stopped, leaderboard)


def positives(ctx: TrackContext, methods: str | None = None, protocols: list[str] | None = None, *,
              force: bool = False, shard: tuple[int, int] | None = None, deadline: Deadline | None = None,
              leaderboard: bool = True) -> bool:
    """The positives ablation on the track: for each (method, positives mode, pretraining seed) unit of `shard`,
    pretrain the method with its positive pairs drawn that way (unless its checkpoint exists: for the preset's
    own mode that is the main grid's) and evaluate it (`protocols`: only these evaluation protocols).
    `methods`: comma-separated, default the protocol's. True when `deadline` stopped it."""
    from methods.registry import get_method
    from protocols import positives as pos
    from protocols.grid import checkpoint_init

    spec, evals, mine = ablation_units(
        ctx, pos, methods, protocols, shard, title="the positives ablation",
        axis="method, positives, pretraining seed",
        refusal=lambda baselines: "the positives ablation pretrains SSL methods; the imagenet and random baselines "
                                  "have no positive pairs")
    pool, downstream = ctx.pretrain_cache(), ctx.downstream_cache()

    def run_of(unit):
        return pretrain_run(ctx, unit.method, pool, unit.pretrain_seed, positives=unit.positives)

    def jobs_of(unit, cfg, checkpoint):
        init = checkpoint_init(method_init_name(ctx, unit.method), checkpoint, unit.pretrain_seed,
                               family=get_method(unit.method).family)
        return pos.positives_jobs(spec, unit, init, evals, ctx.track, downstream, pool, ctx.results_dir,
                                  ctx.runs_dir)

    done, stopped = pretrain_and_evaluate(ctx, mine, pool, lambda u: f"{method_init_name(ctx, u.method)} {u.tag} "
                                          f"(pretraining seed {u.pretrain_seed})", run_of, jobs_of,
                                          force=force, deadline=deadline)
    return ablation_done(ctx, pos.NAME, done, stopped, leaderboard)


def backfill_data_cards(ctx: TrackContext) -> tuple[int, int]:
    """Add the data cards of the track's caches to its results written before results recorded them,
    and the fields a card gained since (its source settings) to the cards they record.

    A result gets the card (and the skipped-file count) of a role only when the cache built now has
    the fingerprint that the result records for that role: the same source and settings, so the same
    frames and index (the cache contract). Fields a result's card already has keep their values, and
    nothing else in a result changes: metrics, keys and the rest of its provenance stay as they were.
    Returns (results changed, results seen)."""
    from leaderboard.results import find_result_files, read_json, write_result

    folder = ctx.results_dir / ctx.track.id
    if not folder.is_dir():
        raise UserError(f"no results of track {ctx.track.id} in {ctx.results_dir}: nothing to backfill "
                        "(pass the --preset, data and --track the results were made with, or --results-dir)")
    caches = {"downstream": ctx.downstream_cache(), "pretrain": ctx.pretrain_cache()}
    cards = {role: cache.card() for role, cache in caches.items()}
    files = find_result_files(folder)
    changed = 0
    for path in files:
        record = read_json(path)
        prov = record["provenance"]
        data, skipped = dict(prov.get("data") or {}), dict(prov.get("skipped_files") or {})
        for role, cache in caches.items():
            if prov["dataset_fingerprints"].get(role) != cache.fingerprint:
                continue
            data[role] = {**cards[role], **data.get(role, {})}  # what the result records stays as it is
            skipped.setdefault(role, int(cache.meta.get("skipped", 0)))
        if data != (prov.get("data") or {}):
            write_result(path, {**record, "provenance": {**prov, "data": data, "skipped_files": skipped}})
            changed += 1
    return changed, len(files)


def cross_scanner(ctx: TrackContext, methods: list[str], baselines: list[str], *, force: bool = False,
                  shard: tuple[int, int] | None = None, deadline: Deadline | None = None,
                  leaderboard: bool = True, protocols: list[str] | None = None) -> bool:
    """The cross-scanner protocol on the track: for each scanner of the downstream data, the inits of
    `methods` (pretrained where missing) and `baselines` are evaluated by each of the protocol's evaluation
    protocols (`protocols`: only these) trained on the other scanners and tested on it. Data with fewer
    scanners than the protocol needs skip it with a message (not an error). True when `deadline` stopped it."""
    import dataclasses

    from benchmark.runner import run_jobs
    from protocols import cross_scanner as xs
    from protocols.spec import evaluation_specs, load_protocol

    spec = load_protocol(xs.NAME, ctx.preset["protocols"].get(xs.NAME))
    s = spec.settings
    downstream = ctx.downstream_cache()
    folds, messages = xs.folds(downstream, s["min_scanners"])
    for message in messages:
        print(message, file=sys.stderr, flush=True)
    if not folds:
        return False
    chosen = [name for name in s["eval_protocols"] if not protocols or name in protocols]
    if not chosen:
        raise UserError(f"--protocol {', '.join(protocols)}: the cross-scanner protocol evaluates with "
                        f"{', '.join(s['eval_protocols'])} (eval_protocols of protocols/cross_scanner.toml; a preset's "
                        "[protocols.cross_scanner] table may change it)")
    evals = evaluation_specs(chosen, ctx.preset["protocols"], fractions=list(s["fractions"]),
                             seeds=list(s["seeds"]), pretrain_seeds=list(s["pretrain_seeds"]))
    ctx = dataclasses.replace(ctx, protocols=evals)  # the inits of the protocol's pretraining seeds
    pool = ctx.pretrain_cache() if methods or "random" in baselines else None
    inits = pretrained_inits(ctx, methods, baselines, pool, deadline)
    if inits is None:
        return True
    jobs = [job for fold in folds for job in xs.fold_jobs(spec, fold, inits, evals, ctx.track, ctx.results_dir,
                                                           ctx.runs_dir, pool=pool)]
    print(f"{xs.NAME} on {ctx.track.id}: {len(folds)} held-out scanners ({', '.join(f.held_out for f in folds)}), "
          f"{len(jobs)} jobs", file=sys.stderr, flush=True)
    summary = run_jobs(jobs, force=force, shard=shard, title=f"{ctx.track.id} {xs.NAME}", deadline=deadline,
                       slots=ctx.slots)
    print(f"{xs.NAME}: {len(summary.done)} runs written, {summary.skipped} already finished, under "
          f"{ctx.results_dir / ctx.track.id}", file=sys.stderr)
    say_reproduction(ctx)
    if leaderboard:
        refresh_leaderboard(ctx.results_dir)
    return summary.stopped
