"""The learning curve: each method pretrained at several budgets (optimiser steps) on the whole pretraining
pool, each checkpoint evaluated by the main protocols at one label fraction (protocols/learning_curve.toml).

A budget is a pretraining run of its own, with the preset's pretraining settings and its own schedule
(warm-up and cosine decay are fractions of the run), made where the track's main pretraining runs are made
(`benchmark.track.pretrain_run`). A budget equal to the preset's is therefore the main grid's run itself:
the same config, key, folder and checkpoint. Its evaluation jobs are the main grid's jobs of that fraction
and those seeds (`protocols.grid.build_grid`), re-keyed and written as learning-curve results, so the probe
reads the features the main grid cached.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.data.cache import FrameCache
from benchmark.runner import Job
from leaderboard.results import LEARNING_CURVE, STEPS_AXIS, budget_tag, result_path
from protocols import keys
from protocols.spec import ProtocolSpec, evaluation_specs

NAME = LEARNING_CURVE


@dataclass(frozen=True)
class Unit:
    """One pretraining run of the curve: `method` for `steps` optimiser steps with `pretrain_seed`;
    `level` is the budget's index in the protocol's budgets."""

    method: str
    steps: int
    level: int
    pretrain_seed: int

    @property
    def tag(self) -> str:
        return budget_tag(self.steps)

    def record(self, evaluation: ProtocolSpec) -> dict:
        return {"axis": STEPS_AXIS, "level": self.level, "steps": self.steps, "eval_protocol": evaluation.name,
                "eval_protocol_hash": evaluation.hash}


def units(spec: ProtocolSpec, methods: list[str]) -> list[Unit]:
    """Every (method, budget, pretraining seed) run, largest budget first: `--shard i/N` takes every N-th,
    so the long runs are dealt out over the shards instead of landing in one."""
    s = spec.settings
    levels = sorted(enumerate(s["budgets"]), key=lambda lv: -lv[1])
    return [Unit(m, steps, level, ps) for level, steps in levels for m in methods for ps in s["pretrain_seeds"]]


def eval_protocols(spec: ProtocolSpec, preset_overrides: dict) -> list[ProtocolSpec]:
    """The main protocols as the curve runs them: its label fraction, seeds and pretraining seeds, plus the
    preset's overrides of each (so at the preset's budget they are the main grid's jobs)."""
    s = spec.settings
    return evaluation_specs(s["eval_protocols"], preset_overrides, fractions=[s["fraction"]], seeds=list(s["seeds"]),
                            pretrain_seeds=list(s["pretrain_seeds"]))


def curve_jobs(spec: ProtocolSpec, unit: Unit, init, evals: list[ProtocolSpec], track, downstream: FrameCache,
               pool: FrameCache, results_dir: Path, runs_dir: Path, progress: bool = True) -> list[Job]:
    """The evaluation jobs of one pretrained budget, as runner jobs writing learning-curve result files
    (`<track>/<init>/learning_curve/steps-<N>/<eval protocol>/...`: the init is the method, or
    `<method>@imagenet` for a run continued from ImageNet weights)."""
    from protocols.grid import as_ablation, build_grid, runner_jobs

    grid = build_grid([init], evals, track, downstream, results_dir, pool=pool)
    for g in grid:
        g.output = result_path(results_dir, track.id, init.name, NAME, g.fraction, g.pretrain_seed, g.seed,
                               variant=f"{unit.tag}/{g.protocol.name}")
    return [as_ablation(job, keys.learning_curve_key(spec.hash, unit.steps, job.key), spec,
                        f"{init.name} {unit.tag} {g.protocol.name} pretrain-seed{g.pretrain_seed} seed{g.seed}",
                        ablation=unit.record(g.protocol))
            for g, job in zip(grid, runner_jobs(grid, downstream, runs_dir, progress=progress), strict=True)]
