"""The variance-vs-size ablation: pretraining subsets along a diversity axis (few → many subjects at a
fixed frame budget) and a size axis (a growing frame budget at fixed subjects), each pretrained for the
same number of steps and evaluated by the main protocols at one label fraction.

Subsets are exact row selections of the pretraining pool's frame cache, so they work on any source:
subjects where the source knows them, else videos (sources then use the video as the subject).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.cache import FrameCache
from benchmark.data.splits import stable_rank
from benchmark.errors import UserError
from benchmark.runner import Job
from leaderboard.results import VARIANCE_VS_SIZE, result_path, subset_tag
from protocols import keys
from protocols.spec import ProtocolSpec, canonical_hash, evaluation_specs

NAME = VARIANCE_VS_SIZE


@dataclass(frozen=True)
class Subset:
    """One pretraining subset: `subjects` distinct subjects, `frames` frames in all."""

    axis: str
    level: int
    subjects: int
    frames: int
    positions: np.ndarray = field(compare=False, repr=False)
    videos: int = 0

    @property
    def tag(self) -> str:
        return subset_tag(self.axis, self.level)

    def record(self, eval_protocol: str, eval_hash: str) -> dict:
        return {"axis": self.axis, "level": self.level, "subjects": self.subjects, "videos": self.videos,
                "frames": self.frames, "eval_protocol": eval_protocol, "eval_protocol_hash": eval_hash}


def select_subset(index: pd.DataFrame, candidates: np.ndarray, n_subjects: int, n_frames: int,
                  seed: int) -> np.ndarray:
    """Row positions of `n_frames` frames from `n_subjects` subjects among `candidates`.

    Subjects are taken in one seeded order (so a smaller level's subjects are among a larger
    level's); the budget is shared as evenly as possible; within a subject, frames are spaced evenly
    over its videos in order (a denser budget = a denser stride through the same videos).
    """
    if n_subjects < 1 or n_frames < n_subjects:
        raise UserError(f"{NAME}: need 1 <= subjects <= frames, got {n_subjects} subjects, {n_frames} frames")
    rows = index.iloc[candidates]
    subjects = pd.unique(rows["subject_id"].astype(str))
    if len(subjects) < n_subjects:
        raise UserError(f"{NAME}: the pretraining pool has {len(subjects)} subjects, the protocol asks for "
                        f"{n_subjects}; use a larger pool (e.g. the simulator's -o subjects=N) or lower "
                        "the protocol's subject levels in the preset")
    chosen = subjects[stable_rank(subjects, seed)][:n_subjects]
    quota = np.full(n_subjects, n_frames // n_subjects)
    quota[: n_frames % n_subjects] += 1
    picked = []
    subj = rows["subject_id"].astype(str).to_numpy()
    for s, q in zip(chosen, quota, strict=True):
        mine = rows[subj == s].sort_values(["video_id", "frame_idx"], kind="stable")
        if q > len(mine):
            raise UserError(f"{NAME}: subject {s} has {len(mine)} frames, a subset needs {q} from each of "
                            f"{n_subjects} subjects ({n_frames} frames); use longer videos or a smaller frame "
                            "budget")
        pos = candidates[index.index.get_indexer(mine.index)]
        picked.append(pos[np.linspace(0, len(mine) - 1, q).round().astype(int)])
    return np.sort(np.concatenate(picked))


def subsets(spec: ProtocolSpec, pool: FrameCache) -> list[Subset]:
    """The protocol's subsets of `pool`'s pretraining frames: the diversity levels, then the size levels."""
    s = spec.settings
    candidates = pool.split_positions("pretrain")
    levels = [("diversity", n, s["diversity"]["frames"]) for n in s["diversity"]["subjects"]] + \
             [("size", s["size"]["subjects"], f) for f in s["size"]["frames"]]
    out: list[Subset] = []
    for axis, n_subj, n_frames in levels:
        level = sum(o.axis == axis for o in out)
        positions = select_subset(pool.index, candidates, n_subj, n_frames, s["selection_seed"])
        videos = int(pool.index.iloc[positions]["video_id"].nunique())
        out.append(Subset(axis, level, n_subj, n_frames, positions, videos))
    return out


def eval_protocols(spec: ProtocolSpec, preset_overrides: dict) -> list[ProtocolSpec]:
    """The main protocols as the ablation runs them: one label fraction, the ablation's seeds and
    pretraining seeds, plus the preset's overrides of each (e.g. fewer fine-tune epochs on the smoke
    track)."""
    s = spec.settings
    return evaluation_specs(s["eval_protocols"], preset_overrides, fractions=[s["fraction"]], seeds=list(s["seeds"]),
                            pretrain_seeds=list(s["pretrain_seeds"]))


def ablation_jobs(spec: ProtocolSpec, method: str, subset: Subset, init, evals: list[ProtocolSpec], track,
                  downstream: FrameCache, pool_fingerprint: str, results_dir: Path, runs_dir: Path,
                  progress: bool = True) -> list[Job]:
    """The evaluation jobs of one pretrained subset, as runner jobs writing ablation result files.

    They reuse the main grid's job machinery (same protocols, same records) and re-key each job by the
    ablation's hash and the subset, so a run is identified by everything that determines it."""
    from protocols.grid import GridJob, as_ablation, runner_jobs

    subset_fp = canonical_hash({"pool": pool_fingerprint, "positions": subset.positions.tolist()})
    grid = []
    # The pretraining data of these runs is the subset, which the ablation record describes.
    cards = {"downstream": downstream.card()}
    for ev in evals:
        for seed in ev.seeds:
            grid.append(GridJob(init=init, protocol=ev, fraction=ev.fractions[0], seed=seed, track=track,
                                fingerprints={"downstream": downstream.fingerprint, "pretrain": subset_fp},
                                data_cards=cards,
                                output=result_path(results_dir, track.id, init.name, NAME, ev.fractions[0],
                                                   init.pretrain_seed, seed, variant=f"{subset.tag}/{ev.name}")))
    return [as_ablation(job, keys.ablation_key(spec.key, {"subset": subset.tag}, job.key), spec,
                        f"{init.name} {subset.tag} {g.protocol.name} pretrain-seed{g.pretrain_seed} seed{g.seed}",
                        ablation=subset.record(g.protocol.name, g.protocol.hash))
            for g, job in zip(grid, runner_jobs(grid, downstream, runs_dir, progress=progress), strict=True)]


def pretrain_subset(preset_pretrain: dict, method: str, spec: ProtocolSpec, subset: Subset, pool: FrameCache,
                    run_dir: Path, seed: int, progress: bool = True) -> Path:
    """Pretrain `method` on one subset with pretraining seed `seed` for the protocol's fixed number of
    steps (keyed and resumable)."""
    from benchmark.pretrain.config import PretrainConfig
    from benchmark.pretrain.run import pretrain

    cfg = PretrainConfig.from_dict({**preset_pretrain, "method": method, "steps": spec.settings["pretrain_steps"],
                                    "batch_size": spec.settings["batch_size"], "seed": seed}).validate()
    if progress:
        print(f"pretraining {method} on {subset.tag} (pretraining seed {seed}): {subset.subjects} subjects, "
              f"{subset.videos} videos, {subset.frames} frames, {spec.settings['pretrain_steps']} steps",
              file=sys.stderr, flush=True)
    return pretrain(cfg, pool, run_dir, progress=progress, frame_positions=subset.positions)
