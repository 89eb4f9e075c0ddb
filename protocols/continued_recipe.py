"""The continued-recipe ablation: each method continued from ImageNet's weights with every candidate recipe of
protocols/continued_recipe.toml, each checkpoint evaluated by the main protocols at one label fraction, so
that the leaderboard can choose one recipe for every method on the validation split
(`leaderboard.continued_recipe`).

A candidate is a pretraining run of its own: the preset's pretraining settings from ImageNet's weights with
the candidate's knobs in place of the preset's `[pretrain.continued]` table, made where the track's main
pretraining runs are made (`benchmark.track.pretrain_run`). A candidate equal to the preset's recipe is
therefore the main grid's continued run itself: the same config, key, folder and checkpoint, and its
evaluation jobs are the main grid's jobs of that fraction and those seeds, re-keyed and written as
continued-recipe results (the probe reads the features the main grid cached).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.data.cache import FrameCache
from benchmark.runner import Job
from leaderboard.results import CONTINUED_RECIPE, RECIPE_AXIS, recipe_tag, result_path
from protocols import keys
from protocols.spec import ProtocolSpec, evaluation_specs

NAME = CONTINUED_RECIPE


@dataclass(frozen=True)
class Unit:
    """One pretraining run: `method` continued from ImageNet with the recipe `name` (`knobs`: as the protocol
    file gives them) and `pretrain_seed`; `level` is the recipe's index in the protocol's recipes."""

    method: str
    name: str
    knobs: dict
    level: int
    pretrain_seed: int

    @property
    def tag(self) -> str:
        return recipe_tag(self.name)

    def record(self, evaluation: ProtocolSpec, recipe: dict) -> dict:
        """`recipe`: every knob the run continued with (what its checkpoint records), not only those given."""
        return {"axis": RECIPE_AXIS, "level": self.level, "recipe_name": self.name, "recipe": dict(recipe),
                "eval_protocol": evaluation.name, "eval_protocol_hash": evaluation.hash}


def units(spec: ProtocolSpec, methods: list[str]) -> list[Unit]:
    """Every (method, recipe, pretraining seed) run, recipe by recipe: `--shard i/N` takes every N-th."""
    s = spec.settings
    return [Unit(m, name, dict(knobs), level, ps) for level, (name, knobs) in enumerate(s["recipes"].items())
            for m in methods for ps in s["pretrain_seeds"]]


def eval_protocols(spec: ProtocolSpec, preset_overrides: dict) -> list[ProtocolSpec]:
    """The main protocols as the ablation runs them: its label fraction, seeds and pretraining seeds, plus the
    preset's overrides of each (so for the preset's own recipe they are the main grid's jobs)."""
    s = spec.settings
    return evaluation_specs(s["eval_protocols"], preset_overrides, fractions=[s["fraction"]], seeds=list(s["seeds"]),
                            pretrain_seeds=list(s["pretrain_seeds"]))


def recipe_jobs(spec: ProtocolSpec, unit: Unit, recipe: dict, init, evals: list[ProtocolSpec], track,
                downstream: FrameCache, pool: FrameCache, results_dir: Path, runs_dir: Path,
                progress: bool = True) -> list[Job]:
    """The evaluation jobs of one candidate's checkpoint, as runner jobs writing continued-recipe result files
    (`<track>/<method>@imagenet/continued_recipe/recipe-<name>/<eval protocol>/...`). `recipe`: every knob
    the checkpoint continued with."""
    from protocols.grid import as_ablation, build_grid, runner_jobs

    grid = build_grid([init], evals, track, downstream, results_dir, pool=pool)
    for g in grid:
        g.output = result_path(results_dir, track.id, init.name, NAME, g.fraction, g.pretrain_seed, g.seed,
                               variant=f"{unit.tag}/{g.protocol.name}")
    return [as_ablation(job, keys.continued_recipe_key(spec.hash, recipe, job.key), spec,
                        f"{init.name} {unit.tag} {g.protocol.name} pretrain-seed{g.pretrain_seed} seed{g.seed}",
                        ablation=unit.record(g.protocol, recipe))
            for g, job in zip(grid, runner_jobs(grid, downstream, runs_dir, progress=progress), strict=True)]
