"""The end of a pretraining run, and the `random` baseline (a run of zero steps).

A finished encoder gets BatchNorm statistics estimated on the clean pool (training's running averages
are over augmented views and lag the weights) and its learning diagnostics (benchmark.pretrain.
diagnostics), written to diagnostics.json. The `random` baseline is the backbone's random weights (from
a seed stream no SSL run starts from) given the same treatment on the same pool, and no gradient step,
so it is compared with SSL checkpoints on equal terms. One process at a time makes a run folder's
final encoder (`exclusive`).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmark.data.cache import FrameCache
from benchmark.pretrain.config import ENGINE_VERSION, PretrainConfig
from benchmark.pretrain.sampler import pretraining_positions

FINAL_NAME = "encoder.safetensors"


@contextlib.contextmanager
def exclusive(folder: Path):
    """One process trains a run folder at a time (e.g. two grid shards needing the same checkpoint:
    the second waits, then finds it done). Ranks > 0 of a DDP launch skip the lock: rank 0 holds it
    and waits for them."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) != 0:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def finish_encoder(encoder, start_state: dict | None, cfg: PretrainConfig, pool: FrameCache,
                   positions: np.ndarray, folder: Path, progress: bool = True) -> dict:
    """Give a finished encoder BatchNorm statistics estimated on the clean pool (the running averages
    of training are over augmented views and lag the weights), measure what pretraining did against
    `start_state` (None: nothing was trained, as for the random baseline), write diagnostics.json
    and say it; returns the diagnostics."""
    from benchmark.backbones import build_backbone
    from benchmark.pretrain import diagnostics as dg

    frames = pool.frames[dg.evenly_spaced(positions, dg.BATCHNORM_FRAMES)]
    device = next(encoder.parameters()).device
    data = dg.diagnostic_data(pool.index, pool.frames, positions)
    # A run that froze its encoder's BatchNorms (a continued recipe's `encoder_bn=frozen`) keeps the
    # start's statistics, which its weights were trained under; so does its `before` snapshot.
    estimate = cfg.hparams.get("encoder_bn", "train") != "frozen"
    if estimate:
        dg.estimate_batchnorm(encoder, frames, cfg.resolution, device=device)
    after = dg.snapshot(encoder, data, cfg.resolution)
    if start_state is None:
        change, before = 0.0, after
    else:
        initial = build_backbone(cfg.backbone, init="random").to(device)
        initial.load_state_dict(start_state)
        if estimate:
            dg.estimate_batchnorm(initial, frames, cfg.resolution, device=device)
        change, before = dg.encoder_change(start_state, encoder.state_dict()), dg.snapshot(initial, data, cfg.resolution)
    diag = {"encoder_change": round(change, 6), "before": before, "after": after, "frames": int(len(data.frames)),
            "knn": {"k": dg.KNN_K, "temperature": dg.KNN_TEMPERATURE}}
    diag["problems"] = dg.problems(diag) if start_state is not None else []
    (folder / "diagnostics.json").write_text(json.dumps(diag, indent=1) + "\n")
    if progress:
        print(dg.summary_line(cfg.method, diag), file=sys.stderr)
        for problem in diag["problems"]:
            print(f"warning: {cfg.method}: {problem}", file=sys.stderr)
    return diag


# The random baseline of pretraining seed s draws its weights from torch seed RANDOM_SEED_BASE + s:
# a stream no SSL run starts from (SSL runs seed with s itself), so no SSL row is the baseline's network.
RANDOM_SEED_BASE = 1_000_000


def random_baseline_key(backbone: str, resolution: int, seed: int, data_fingerprint: str) -> str:
    """The random baseline checkpoint's config key: what its weights and BatchNorm statistics depend on.
    Committed results record it (`init.pretrain.config_key`), so a change here orphans them."""
    return hashlib.sha256(json.dumps({"baseline": "random", "backbone": backbone, "resolution": resolution,
                                      "seed": seed, "data": data_fingerprint, "engine": ENGINE_VERSION},
                                     sort_keys=True).encode()).hexdigest()


def random_baseline(backbone: str, resolution: int, seed: int, pool: FrameCache, run_dir: Path,
                    progress: bool = True) -> Path:
    """The `random` init of pretraining seed `seed` as a checkpoint: random weights, BatchNorm
    statistics estimated on the pool's pretraining frames (no gradient step). Made once, keyed."""
    import torch

    from benchmark.backbones import build_backbone
    from benchmark.checkpoint import save_encoder
    from benchmark.device import machine_record

    cfg = PretrainConfig(method="random", backbone=backbone, resolution=resolution, seed=seed, steps=1).validate()
    positions = pretraining_positions(pool, cfg.limit_frames)
    key = random_baseline_key(backbone, resolution, seed, pool.fingerprint)
    folder = Path(run_dir) / f"random-{key[:12]}"
    final = folder / FINAL_NAME
    if final.exists():
        return final
    with exclusive(folder):
        if final.exists():
            return final
        started = time.time()
        torch.manual_seed(RANDOM_SEED_BASE + seed)
        encoder = build_backbone(backbone, init="random")
        diagnostics = finish_encoder(encoder, None, cfg, pool, positions, folder, progress=progress)
        meta = {"method": "random", "backbone": backbone, "init": "random", "resolution": resolution, "steps": 0,
                "seed": seed, "weights_seed": RANDOM_SEED_BASE + seed, "data_fingerprint": pool.fingerprint,
                "data_subset_fingerprint": pool.fingerprint, "frames": int(len(positions)), "config_key": key,
                "engine_version": ENGINE_VERSION, "wall_time_s": round(time.time() - started, 1),
                "diagnostics": diagnostics, "threads": torch.get_num_threads(), "machine": machine_record("cpu")}
        save_encoder(final, encoder, meta)
    return final
