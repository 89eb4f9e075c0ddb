"""The cross-scanner protocol: leave one scanner out (protocols/cross_scanner.toml).

For each scanner of the downstream data, a *fold* is a view of the frame cache whose splits say what
that fold may use: the other scanners' train and val images keep their splits (the label subsets
and the model selection draw from them alone), the held-out scanner's test images are the `test`
split, the other scanners' test images become the in-scanner test split, and everything else (the
held-out scanner's train and val images, images of no known scanner) is out of the fold. The view
shares the cache's frames and fingerprint, so every evaluation protocol runs unchanged on it: the linear
probe and the k-NN with the features they cached for the main grid, fine-tuning on the fold's label
subsets and validation images; each also scores the fold's in-scanner test split with the model it chose.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.data.cache import UNKNOWN_SCANNER, FrameCache
from benchmark.runner import Job
from leaderboard.results import CROSS_SCANNER, IN_SCANNER_TEST, result_path, scanner_tag
from protocols import keys
from protocols.spec import ProtocolSpec

NAME = CROSS_SCANNER
OUT_OF_FOLD = "out_of_fold"  # the split of rows a fold never uses


@dataclass(frozen=True)
class Fold:
    held_out: str
    train_scanners: list[str]
    view: FrameCache

    def record(self, eval_protocol: ProtocolSpec) -> dict:
        return {"held_out": self.held_out, "train_scanners": list(self.train_scanners),
                "eval_protocol": eval_protocol.name, "eval_protocol_hash": eval_protocol.hash}


def held_out_view(cache: FrameCache, held_out: str) -> FrameCache:
    """The cache as the fold holding out `held_out` sees it (see the module doc)."""
    scanner = cache.index["scanner"].to_numpy()
    split = cache.index["split"].to_numpy()
    mine, known = scanner == held_out, scanner != UNKNOWN_SCANNER
    new = np.where(mine, np.where(split == "test", "test", OUT_OF_FOLD),
                   np.where(known, np.where(split == "test", IN_SCANNER_TEST, split), OUT_OF_FOLD))
    return dataclasses.replace(cache, index=cache.index.assign(split=new))


def folds(cache: FrameCache, min_scanners: int) -> tuple[list[Fold], list[str]]:
    """The folds of `cache`, and a message for each scanner that cannot be held out (or, with fewer than
    `min_scanners` scanners, one message saying the protocol does not apply)."""
    scanners = cache.scanners
    where = cache.meta.get("spec", str(cache.root))
    if len(scanners) < min_scanners:
        found = f"{len(scanners)} scanner(s) ({', '.join(scanners)})" if scanners else "no scanner"
        return [], [f"{NAME}: skipped: the downstream data {where} records {found} for its labelled "
                    f"images, the protocol needs at least {min_scanners} (a `scanner` per image: FETAL_PLANES_DB's "
                    "US_Machine, a scanner column in a csv: manifest, or the simulator's -O scanners=N)"]
    out, messages = [], []
    for held_out in scanners:
        view = held_out_view(cache, held_out)
        empty = [name for name, split in (("its test images", "test"), ("train images of the other scanners", "train"),
                                          ("val images of the other scanners", "val"),
                                          ("test images of the other scanners", IN_SCANNER_TEST))
                 if len(view.labelled_positions(split)) == 0]
        if empty:
            messages.append(f"{NAME}: scanner {held_out!r} of {where} is not held out: no {', no '.join(empty)}")
            continue
        out.append(Fold(held_out, [s for s in scanners if s != held_out], view))
    return out, messages


def fold_jobs(spec: ProtocolSpec, fold: Fold, inits: list, evals: list[ProtocolSpec], track, results_dir: Path,
              runs_dir: Path, pool: FrameCache | None = None, progress: bool = True) -> list[Job]:
    """The jobs of one fold: every init × evaluation protocol × fraction × (pretraining seed, seed) of the
    main grid, on the fold's view, each re-keyed by the held-out scanner and the protocol's hash scoped to
    the job's evaluation protocol (`ProtocolSpec.scoped`: adding an evaluation protocol to the file keeps
    the finished runs of the others)."""
    from protocols.grid import as_ablation, build_grid, runner_jobs

    grid = build_grid(inits, evals, track, fold.view, results_dir, pool=pool)
    tag = scanner_tag(fold.held_out)
    scoped = {e.name: spec.scoped(e.name) for e in evals}
    ablation_keys = []
    for g in grid:
        g.output = result_path(results_dir, track.id, g.init.name, NAME, g.fraction, g.pretrain_seed, g.seed,
                               variant=f"{tag}/{g.protocol.name}")
        ablation_keys.append(keys.ablation_key(scoped[g.protocol.name].key, {"held_out": fold.held_out}, g.key))
        # The view shares the cache's fingerprint, so the evaluation job's own key is the main grid's (and
        # every fold's): a fine-tune job keeps its resumable state under the fold's key instead.
        g.state_key = ablation_keys[-1]
    return [as_ablation(job, key, scoped[g.protocol.name], f"{g.label} held out {fold.held_out}",
                        scanner=fold.record(g.protocol))
            for g, job, key in zip(grid, runner_jobs(grid, fold.view, runs_dir, progress=progress,
                                                     extra_tests=(IN_SCANNER_TEST,)), ablation_keys, strict=True)]
