"""`pretrain(cfg, pool, run_dir)`: one SSL pretraining run on a frame cache, resumable, keyed.

Run folder `<run_dir>/<method>-<key12>/` (the key covers everything that determines the result):

    config.json             the config, the key and the data fingerprint
    checkpoints/last.ckpt   Lightning's full training state, every N steps and at each epoch end
    tb/, csv/version_N/     TensorBoard and CSV logs (a resumed run adds to them: an event file in
                            tb/, a new csv/version_N/)
    diagnostics.json        did it learn: encoder change, embedding std, effective rank, k-NN
                            macro-F1 before and after (benchmark.pretrain.diagnostics)
    encoder.safetensors     the final encoder (benchmark.checkpoint format) — its presence marks
                            the run as finished; the training state is then removed

The `random` baseline is made here too, as a run of zero steps: the backbone's random weights
(from a seed stream no SSL run starts from) with BatchNorm statistics estimated on the same pool,
so it is compared with SSL checkpoints on equal terms.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmark.data.cache import FrameCache
from benchmark.errors import Terminated, UserError
from benchmark.pretrain.config import EARLIER_CPU_MEMORY_FORMAT, ENGINE_VERSION, PretrainConfig

CHECKPOINT_EVERY_STEPS = 100
FINAL_NAME = "encoder.safetensors"


def run_folder(cfg: PretrainConfig, key: str, run_dir: Path) -> Path:
    return Path(run_dir) / f"{cfg.method}-{key[:12]}"


def pretraining_positions(cfg: PretrainConfig, pool: FrameCache,
                          frame_positions: np.ndarray | None = None) -> np.ndarray:
    """Cache rows to pretrain on: `frame_positions`, else the pool's `pretrain` split (never a
    downstream test frame), thinned evenly to `limit_frames`."""
    if frame_positions is not None:
        positions = np.unique(np.asarray(frame_positions, dtype=np.int64))
        if len(positions) and (positions[0] < 0 or positions[-1] >= len(pool.index)):
            raise UserError(f"frame_positions must be row numbers of the pool (0..{len(pool.index) - 1})")
    else:
        positions = pool.split_positions("pretrain")
        if len(positions) == 0:
            raise UserError(f"the cache {pool.root} has no frames in the 'pretrain' split; pretrain on a "
                            "dataset prepared with role pretrain")
    if cfg.limit_frames is not None and cfg.limit_frames < len(positions):
        positions = positions[np.unique(np.linspace(0, len(positions) - 1, cfg.limit_frames).round().astype(int))]
    return positions


def data_fingerprint(pool: FrameCache, positions: np.ndarray, frame_positions: np.ndarray | None) -> str:
    if frame_positions is None:
        return pool.fingerprint  # the subset is a function of the config (split, limit_frames)
    return hashlib.sha256(pool.fingerprint.encode() + positions.tobytes()).hexdigest()


def pretrain(cfg: PretrainConfig, pool: FrameCache, run_dir: Path, resume: bool = True, progress: bool = True,
             frame_positions: np.ndarray | None = None, checkpoint_every: int = CHECKPOINT_EVERY_STEPS,
             frame_placement: str = "auto") -> Path:
    """Pretrain `cfg.method` on `pool`; returns the final encoder checkpoint. A finished run returns
    at once; a killed one resumes from its last.ckpt (unless `resume=False`, which starts over).
    `frame_placement` (auto | resident | streamed) picks the GPU input path (benchmark.pretrain.loader);
    it changes the speed, never the result."""
    cfg.validate()
    positions = pretraining_positions(cfg, pool, frame_positions)
    data_fp = data_fingerprint(pool, positions, frame_positions)
    key = cfg.key(data_fp)
    folder = run_folder(cfg, key, run_dir)
    final = folder / FINAL_NAME
    if final.exists():
        return final
    with _exclusive(folder):
        if final.exists():  # another process finished it while we waited
            return final
        with _quiet_lightning():
            return _train(cfg, pool, positions, data_fp, key, folder, final, resume, progress, checkpoint_every,
                          frame_placement)


@contextlib.contextmanager
def _quiet_lightning():
    """Keep Lightning's chatter out of the run's output: its hardware banner and its advertising tips
    (cloud loggers, model registries) log at INFO, and its pytree helper trips torch's LeafSpec
    deprecation warning on every step's outputs. Warnings and errors still come through."""
    import logging
    import warnings

    import pytorch_lightning  # noqa: F401  (it sets its loggers' level on import; ours must come after)

    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*LeafSpec.* is deprecated")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def _exclusive(folder: Path):
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


def _train(cfg: PretrainConfig, pool: FrameCache, positions: np.ndarray, data_fp: str, key: str, folder: Path,
           final: Path, resume: bool, progress: bool, checkpoint_every: int, frame_placement: str) -> Path:

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    from benchmark.augment import views_as_dict, views_from_overrides
    from benchmark.backbones import build_backbone
    from benchmark.checkpoint import save_encoder
    from benchmark.device import channels_last
    from benchmark.pretrain.checkpoint_io import AtomicCheckpointIO
    from benchmark.pretrain.module import FiniteLossGuard, PretrainModule, ProgressBar
    from methods.registry import get_method

    method_cls = get_method(cfg.method)
    views = views_from_overrides(cfg.augment, method_cls.augmentations)
    batch_size = int(cfg.batch_size or method_cls.defaults["batch_size"])
    ckpt_dir = folder / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if not resume and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(
        {"config": {k: v for k, v in vars(cfg).items()}, "key": key, "data_fingerprint": data_fp,
         "frames": int(len(positions))}, indent=1, default=str))

    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.precision, cuda)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    from benchmark import determinism

    arithmetic = determinism.configure("cuda" if cuda else "cpu")
    pl.seed_everything(cfg.seed, workers=False, verbose=False)
    encoder = build_backbone(cfg.backbone, init=cfg.init)
    method = method_cls(encoder, **cfg.hparams)
    start_state = {k: v.detach().clone() for k, v in method.encoder.state_dict().items()}
    if cuda or channels_last("cpu", cfg.cpu_memory_format):
        method = method.to(memory_format=torch.channels_last)

    world = _world_size(cfg, cuda)
    # Under a distributed launcher (torchrun) DDP is used even for one process, so that a one-process
    # launch runs the same code as an N-process one (process group, DDP wrapper, gathered losses).
    distributed = world > 1 or _launched_distributed()
    if distributed:
        method.set_gather_distributed(True)
        if cuda:  # torch's SyncBatchNorm refuses CPU tensors
            method = sync_batchnorm(method)
    steps_per_epoch = len(positions) // (batch_size * world)
    if steps_per_epoch == 0:
        raise UserError(f"the pretraining pool has {len(positions)} frames, fewer than one global batch "
                        f"({batch_size} × {world} devices); lower --batch-size or use more data")
    total_steps = cfg.steps
    guard = FiniteLossGuard(cfg.method, str(ckpt_dir), checkpoint_every, log_every_n_steps=50 if cuda else 10)
    callbacks = [
        guard,
        # Every N steps and at each epoch end (Lightning allows one trigger per ModelCheckpoint).
        ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, every_n_train_steps=checkpoint_every),
        ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, save_on_train_epoch_end=True),
    ]
    callbacks.append(_save_on_stop(last))
    if progress:
        callbacks.append(ProgressBar(guard, refresh_rate=1 if not cuda else 10))
    trainer = pl.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=cfg.devices if cuda else 1,
        num_nodes=cfg.num_nodes,
        strategy="ddp" if distributed else "auto",
        sync_batchnorm=False,  # converted above (sync_batchnorm), not by Lightning
        precision=precision,
        max_epochs=-(-total_steps // steps_per_epoch),  # the pool is cycled as often as the budget needs
        max_steps=total_steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        # Each (re)start logs beside the earlier ones, never over them: TensorBoard adds an event file
        # to tb/ (shown as one run), the CSV logger (which deletes a metrics.csv it finds) a new
        # csv/version_N/.
        logger=[TensorBoardLogger(folder, name="tb", version=""), CSVLogger(folder, name="csv")],
        callbacks=callbacks,
        enable_progress_bar=progress,
        enable_model_summary=False,
        use_distributed_sampler=False,
        log_every_n_steps=1,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=folder,
    )
    if trainer.world_size != world:
        raise UserError(f"expected {world} processes, Lightning set up {trainer.world_size}; "
                        "give --devices as a number")
    module = PretrainModule(method, views, cfg.resolution, method.hparams, batch_size, steps_per_epoch,
                            total_steps, cfg.seed, compile=cfg.compile)
    module.train_dataloader = _loader_factory(module, trainer, pool, positions, cfg, batch_size, total_steps,
                                              frame_placement)

    started = time.time()
    # Lightning turns Ctrl-C (and SIGTERM, which the CLI raises as Terminated) into sys.exit(1), or
    # stops at the next step on a SIGTERM only it saw; callers expect the interrupt back, SIGTERM's as such.
    try:
        with _sigterm_at_step_end():
            trainer.fit(module, ckpt_path=str(last) if resume and last.exists() else None, weights_only=True)
    except SystemExit:
        if trainer.interrupted:
            raise (Terminated if trainer.received_sigterm else KeyboardInterrupt) from None
        raise
    if trainer.interrupted or trainer.global_step < total_steps:
        raise Terminated if trainer.received_sigterm else KeyboardInterrupt
    if trainer.is_global_zero:
        # A plain copy of the trained encoder: under DDP its BatchNorms are synchronised ones, whose
        # forward passes would wait for the other ranks while this one alone measures it.
        encoder = build_backbone(cfg.backbone, init="random").to(module.device)
        encoder.load_state_dict({k: v.float() for k, v in method.encoder.state_dict().items()})
        diagnostics = finish_encoder(encoder, start_state, cfg, pool, positions, folder)
        meta = {
            "method": cfg.method, "hparams": method.hparams, "backbone": cfg.backbone, "init": cfg.init,
            "resolution": cfg.resolution, "positives": cfg.positives, "steps": total_steps,
            "batch_size": batch_size, "global_batch_size": batch_size * world,
            "seed": cfg.seed, "augment": views_as_dict(views), "precision": precision,
            "data_fingerprint": pool.fingerprint, "data_subset_fingerprint": data_fp, "frames": int(len(positions)),
            "config_key": key, "engine_version": ENGINE_VERSION, "wall_time_s": round(time.time() - started, 1),
            "final_loss": getattr(guard, "last_value", None),
            "views_per_s": guard.views_per_second(module, world), "diagnostics": diagnostics, **arithmetic,
            # How it ran (what Lightning and the loader chose), for reading its speed.
            "strategy": type(trainer.strategy).__name__,
            "frame_loader": getattr(trainer.train_dataloader, "placement", None),
            # Recorded where it is not the layout of the runs made before the setting existed.
            **({"cpu_memory_format": cfg.cpu_memory_format}
               if cfg.cpu_memory_format != EARLIER_CPU_MEMORY_FORMAT else {}),
        }
        save_encoder(final, encoder, meta)
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # finished: the encoder is the result
    trainer.strategy.barrier("pretrain-final")
    return final


def _save_on_stop(last: Path):
    """A callback: on an interruption the logs so far are written out; on SIGTERM, which stops
    training at a step's end where the state is whole, the training state is saved too, so the same
    command resumes from that step."""
    from pytorch_lightning.callbacks import Callback
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    class SaveOnStop(Callback):
        def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
            for logger in trainer.loggers:
                logger.save()
            if isinstance(exception, SIGTERMException):
                trainer.save_checkpoint(last, weights_only=False)

    return SaveOnStop()


@contextlib.contextmanager
def _sigterm_at_step_end():
    """While Lightning trains, SIGTERM only sets Lightning's flag (its handler, registered over this
    one, notes it), and training stops at the end of the step under way instead of in the middle of
    it (where the CLI's handler would raise). Only the main thread may set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _noted_by_lightning)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _noted_by_lightning(signum, frame) -> None:
    """Lightning's SIGTERM handler, chained before this one, has recorded the signal."""


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
    dg.estimate_batchnorm(encoder, frames, cfg.resolution, device=device)
    after = dg.snapshot(encoder, data, cfg.resolution)
    if start_state is None:
        change, before = 0.0, after
    else:
        initial = build_backbone(cfg.backbone, init="random").to(device)
        initial.load_state_dict(start_state)
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


def random_baseline(backbone: str, resolution: int, seed: int, pool: FrameCache, run_dir: Path,
                    progress: bool = True) -> Path:
    """The `random` init of pretraining seed `seed` as a checkpoint: random weights, BatchNorm
    statistics estimated on the pool's pretraining frames (no gradient step). Made once, keyed."""
    import torch

    from benchmark.backbones import build_backbone
    from benchmark.checkpoint import save_encoder

    cfg = PretrainConfig(method="random", backbone=backbone, resolution=resolution, seed=seed, steps=1).validate()
    positions = pretraining_positions(cfg, pool)
    key = hashlib.sha256(json.dumps({"baseline": "random", "backbone": backbone, "resolution": resolution,
                                     "seed": seed, "data": pool.fingerprint, "engine": ENGINE_VERSION},
                                    sort_keys=True).encode()).hexdigest()
    folder = Path(run_dir) / f"random-{key[:12]}"
    final = folder / FINAL_NAME
    if final.exists():
        return final
    with _exclusive(folder):
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
                "diagnostics": diagnostics}
        save_encoder(final, encoder, meta)
    return final


def _loader_factory(module, trainer, pool: FrameCache, positions: np.ndarray, cfg: PretrainConfig,
                    batch_size: int, total_steps: int, frame_placement: str):
    """Built inside `fit` (Lightning's train_dataloader hook), when the rank and device are known."""
    from benchmark.pretrain.loader import make_loader
    from benchmark.pretrain.sampler import PairSampler, parse_positives

    def train_dataloader():
        sampler = PairSampler(pool.index, positions, parse_positives(cfg.positives), batch_size, cfg.seed,
                              rank=trainer.global_rank, world=trainer.world_size)
        return make_loader(pool.frames, sampler, lambda: trainer.global_step, total_steps, module.device,
                           frame_placement)

    return train_dataloader


def sync_batchnorm(module):
    """BatchNorm layers synchronised across DDP processes. timm's converter, not torch's (which
    Lightning's `sync_batchnorm=True` uses): torch's turns timm's BatchNormAct2d (EfficientNet-Lite's
    norm + ReLU6) into a plain SyncBatchNorm and silently drops the activation."""
    from timm.layers import convert_sync_batchnorm

    return convert_sync_batchnorm(module)


def resolve_precision(precision: str, cuda: bool) -> str:
    """A config's precision as Lightning names it: `auto` is bf16-mixed on a GPU, 32-true on a CPU."""
    if precision == "auto":
        return "bf16-mixed" if cuda else "32-true"
    return "32-true" if precision == "32" else precision


def _launched_distributed() -> bool:
    from lightning_fabric.plugins.environments import TorchElasticEnvironment

    return TorchElasticEnvironment.detect()


def _world_size(cfg: PretrainConfig, cuda: bool) -> int:
    if not cuda:
        return cfg.num_nodes
    import torch

    devices = cfg.devices
    if devices in ("auto", -1, "-1"):
        per_node = torch.cuda.device_count()
    elif isinstance(devices, str) and "," in devices:
        per_node = len([d for d in devices.split(",") if d.strip()])
    else:
        try:
            per_node = int(devices)
        except (TypeError, ValueError) as exc:
            raise UserError(f"devices must be 'auto', a number or a comma-separated list, got {devices!r}") from exc
    return max(1, per_node) * cfg.num_nodes
