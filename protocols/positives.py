"""The positives ablation: each method pretrained with each way of drawing its positive pairs
(protocols/positives.toml: two augmentations of one frame, or two frames of one clip), each checkpoint
evaluated by the main protocols at the ablation's label fractions, so that the leaderboard can say whether the
video's time helps (`leaderboard.positives`: paired Δ against the reference mode).

A mode is a pretraining run of its own: the preset's pretraining settings with `positives` set to the mode,
made where the track's main pretraining runs are made (`benchmark.track.pretrain_run`). A mode equal to the
preset's own is therefore the main grid's run itself: the same config, key, folder and checkpoint, and its
evaluation jobs are the main grid's jobs of those fractions and seeds, re-keyed and written as positives
results (the probe reads the features the main grid cached).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.data.cache import FrameCache
from benchmark.runner import Job
from leaderboard.results import POSITIVES, POSITIVES_AXIS, positives_tag, result_path
from protocols import keys
from protocols.spec import ProtocolSpec, evaluation_specs

NAME = POSITIVES


@dataclass(frozen=True)
class Unit:
    """One pretraining run: `method` with positive pairs drawn as `positives` and `pretrain_seed`; `level` is
    the mode's index in the protocol's modes."""

    method: str
    positives: str
    level: int
    pretrain_seed: int

    @property
    def tag(self) -> str:
        return positives_tag(self.positives)

    def record(self, evaluation: ProtocolSpec, reference: str) -> dict:
        """`reference`: the protocol's reference mode, which the leaderboard compares every other mode with."""
        return {"axis": POSITIVES_AXIS, "level": self.level, "positives": self.positives, "reference": reference,
                "eval_protocol": evaluation.name, "eval_protocol_hash": evaluation.hash}


def units(spec: ProtocolSpec, methods: list[str]) -> list[Unit]:
    """Every (method, mode, pretraining seed) run, pretraining seed by pretraining seed, so that a run stopped
    half-way (`--time-limit`) leaves whole pairs to compare: `--shard i/N` takes every N-th."""
    s = spec.settings
    return [Unit(m, mode, level, ps) for ps in s["pretrain_seeds"] for m in methods
            for level, mode in enumerate(s["modes"])]


def eval_protocols(spec: ProtocolSpec, preset_overrides: dict) -> list[ProtocolSpec]:
    """The main protocols as the ablation runs them: its label fractions, seeds and pretraining seeds, plus the
    preset's overrides of each (so for the preset's own mode they are the main grid's jobs)."""
    s = spec.settings
    return evaluation_specs(s["eval_protocols"], preset_overrides, fractions=list(s["fractions"]),
                            seeds=list(s["seeds"]), pretrain_seeds=list(s["pretrain_seeds"]))


def positives_jobs(spec: ProtocolSpec, unit: Unit, init, evals: list[ProtocolSpec], track, downstream: FrameCache,
                   pool: FrameCache, results_dir: Path, runs_dir: Path, progress: bool = True) -> list[Job]:
    """The evaluation jobs of one mode's checkpoint, as runner jobs writing positives result files
    (`<track>/<init>/positives/positives-<mode>/<eval protocol>/...`)."""
    from protocols.grid import as_ablation, build_grid, runner_jobs

    grid = build_grid([init], evals, track, downstream, results_dir, pool=pool)
    for g in grid:
        g.output = result_path(results_dir, track.id, init.name, NAME, g.fraction, g.pretrain_seed, g.seed,
                               variant=f"{unit.tag}/{g.protocol.name}")
    return [as_ablation(job, keys.positives_key(spec.hash, unit.positives, job.key), spec,
                        f"{init.name} {unit.tag} {g.protocol.name} {g.fraction:g} pretrain-seed{g.pretrain_seed} "
                        f"seed{g.seed}", ablation=unit.record(g.protocol, spec.settings["reference"]))
            for g, job in zip(grid, runner_jobs(grid, downstream, runs_dir, progress=progress), strict=True)]
