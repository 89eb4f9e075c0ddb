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

How a finished encoder gets its BatchNorm statistics and diagnostics, and the `random` baseline (a
run of zero steps), are in benchmark.pretrain.finish.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
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
from benchmark.pretrain.finish import FINAL_NAME, exclusive, finish_encoder
from benchmark.pretrain.sampler import pretraining_positions
from leaderboard.results import RANDOM_START, continued_name

CHECKPOINT_EVERY_STEPS = 100


def run_folder(cfg: PretrainConfig, key: str, run_dir: Path) -> Path:
    """`<method>-<key12>`; a run continued from ImageNet weights `<method>@imagenet-<key12>` (its key
    differs anyway: the start is in it), so the two sit apart when listed."""
    return Path(run_dir) / f"{continued_name(cfg.method, cfg.init)}-{key[:12]}"


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
    positions = pretraining_positions(pool, cfg.limit_frames, frame_positions)
    data_fp = data_fingerprint(pool, positions, frame_positions)
    key = cfg.key(data_fp)
    folder = run_folder(cfg, key, run_dir)
    final = folder / FINAL_NAME
    if final.exists():
        return final
    with exclusive(folder):
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
    for warning in method.setting_warnings(batch_size * world):
        print(f"warning: {cfg.method}: {warning}", file=sys.stderr, flush=True)
    total_steps = cfg.steps
    warmup_steps = int(method.hparams.get("head_warmup_steps", 0))
    if warmup_steps >= total_steps:
        print(f"warning: {cfg.method}: head_warmup_steps={warmup_steps} is not below the budget of {total_steps} "
              "steps, so the encoder never trains in this run", file=sys.stderr, flush=True)
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
            # A continued run: where it started and the recipe it continued with (every knob, given or not).
            **({"continued": continued_record(cfg, method.hparams)} if cfg.init != RANDOM_START else {}),
            # Recorded where it is not the layout of the runs made before the setting existed.
            **({"cpu_memory_format": cfg.cpu_memory_format}
               if cfg.cpu_memory_format != EARLIER_CPU_MEMORY_FORMAT else {}),
        }
        save_encoder(final, encoder, meta)
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # finished: the encoder is the result
    trainer.strategy.barrier("pretrain-final")
    return final


def continued_record(cfg: PretrainConfig, hparams: dict) -> dict:
    """What a continued run records beside its hyper-parameters: its start, the source of the start's
    weights and its recipe (methods.base.CONTINUATION_OPTIONS, the values it ran with)."""
    from benchmark.backbones import imagenet_weights_source
    from methods.base import CONTINUATION_OPTIONS

    return {"start": cfg.init, "weights": imagenet_weights_source(cfg.backbone),
            "recipe": {k: hparams.get(k, default) for k, default in CONTINUATION_OPTIONS.items()}}


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
