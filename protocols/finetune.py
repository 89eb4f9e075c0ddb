"""The fine-tune protocol: the whole network (encoder + linear head) trained on the label subset.

AdamW, linear warm-up then cosine decay per step, class-weighted cross-entropy, RandAugment-like
intensity/geometry + flips on whole batches on the device (kornia: a maintained library; the
engine's `benchmark.augment` is tuned for SSL views — solarize, strong crops — while this protocol
needs the milder set whose every parameter the protocol file fixes). The epoch kept is the best on
validation (`select_metric`, macro-F1); the test split is scored once, with that epoch's weights.

A plain loop rather than a Lightning Trainer: the grid is many tiny jobs (at 1 % labels a job is a
few dozen steps) where the Trainer's start-up would dominate. Resume: the job's state (model,
optimizer, schedule, best epoch so far) is saved atomically at epoch ends to `state_path`, and a
rerun continues from it; the data order and augmentation stream of epoch e are functions of
(seed, e), so a resumed job trains exactly as an uninterrupted one.
"""
from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.data.cache import FrameCache
from protocols.linear_probe import _labelled, class_weights, default_device, training_subset
from protocols.metrics import select_score, split_metrics
from protocols.spec import ProtocolSpec

# Save the resume state only when an epoch ends this long after the last save: long GPU jobs are
# protected, while the seconds-long CPU jobs of the smoke track do not pay for writing weights.
SAVE_EVERY_S = 30.0


class Classifier(nn.Module):
    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.feat_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def build_augment(cfg: dict, resolution: int) -> nn.Module:
    import kornia.augmentation as K

    ops: list[nn.Module] = [K.RandomResizedCrop((resolution, resolution),
                                                scale=(cfg["scale_min"], cfg["scale_max"]), p=1.0)]
    if cfg["hflip"] > 0:
        ops.append(K.RandomHorizontalFlip(p=cfg["hflip"]))
    if cfg["vflip"] > 0:
        ops.append(K.RandomVerticalFlip(p=cfg["vflip"]))
    if cfg["rotate_deg"] > 0 or cfg["translate"] > 0:
        ops.append(K.RandomAffine(degrees=cfg["rotate_deg"], translate=(cfg["translate"], cfg["translate"]),
                                  p=1.0))
    if cfg["brightness"] > 0:
        ops.append(K.RandomBrightness(brightness=(1 - cfg["brightness"], 1 + cfg["brightness"]), p=1.0))
    if cfg["contrast"] > 0:
        ops.append(K.RandomContrast(contrast=(1 - cfg["contrast"], 1 + cfg["contrast"]), p=1.0))
    if cfg["gamma"] > 0:
        ops.append(K.RandomGamma(gamma=(1 - cfg["gamma"], 1 + cfg["gamma"]), p=1.0))
    if cfg["noise_std"] > 0:
        ops.append(K.RandomGaussianNoise(std=cfg["noise_std"], p=1.0))
    return K.AugmentationSequential(*ops)


def lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def epoch_order(n: int, steps: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """steps × batch positions into the training subset: concatenated permutations (a small subset
    is cycled), a function of (seed, epoch) only."""
    rng = np.random.default_rng([seed, epoch])
    need = steps * batch_size
    order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(need / n))])[:need]
    return order.reshape(steps, batch_size)


@torch.no_grad()
def predict(model: nn.Module, frames: np.ndarray, positions: np.ndarray, batch_size: int,
            device: torch.device) -> np.ndarray:
    model.eval()
    out = []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    for start in range(0, len(positions), batch_size):
        x = _batch(frames, positions[start:start + batch_size], device)
        with autocast:
            out.append(model(x).argmax(1).cpu().numpy())
    return np.concatenate(out)


def recalibrate_batchnorm(model: nn.Module, frames: np.ndarray, positions: np.ndarray, batch_size: int,
                          device: torch.device) -> None:
    """Recompute BatchNorm running statistics as exact averages over the clean training images
    (torch's `swa_utils.update_bn`, which resets them and averages with momentum None)."""
    batches = (_batch(frames, positions[i:i + batch_size], device) for i in range(0, len(positions), batch_size))
    torch.optim.swa_utils.update_bn(batches, model)


def _batch(frames: np.ndarray, positions: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(frames[positions]))
    return x.to(device).unsqueeze(1).float().div_(255)


def run_finetune(make_encoder: Callable[[], nn.Module], cache: FrameCache, spec: ProtocolSpec,
                 fraction: float, seed: int, state_path: Path | None = None,
                 device: torch.device | None = None, progress: bool = True,
                 save_every_s: float = SAVE_EVERY_S) -> dict:
    """One fine-tune job → {"metrics": {"val", "test"}, "train": {...}} (the result's own fields).

    `make_encoder` is called after the job's seed is set, so a random init is drawn from the seed.
    """
    device = device or default_device()
    t, a = spec.settings["train"], spec.settings["augment"]
    labels = cache.index["label"].to_numpy()
    k = cache.num_classes
    tr = training_subset(cache, fraction, seed)
    val, te = _labelled(cache, "val"), _labelled(cache, "test")
    frames = cache.frames

    torch.manual_seed(seed)
    model = Classifier(make_encoder(), k).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    steps_per_epoch = max(math.ceil(len(tr) / t["batch_size"]), t["min_steps_per_epoch"])
    total = steps_per_epoch * t["epochs"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, steps_per_epoch * t["warmup_epochs"]))
    weight = torch.tensor(class_weights(labels[tr], k), dtype=torch.float32, device=device) \
        if t["class_weighted"] else None
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    augment = build_augment(a, cache.resolution).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    state = {"epoch": 0, "best_score": -1.0, "best_epoch": -1, "best_model": None, "best_val": None,
             "history": []}
    if state_path is not None and Path(state_path).exists():
        saved = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        state = saved["state"]
        if progress:
            print(f"resuming fine-tune at epoch {state['epoch']} from {state_path}", file=sys.stderr)
    last_save = time.monotonic()

    for epoch in range(state["epoch"], t["epochs"]):
        model.train()
        torch.manual_seed(seed * 1_000_003 + epoch)  # the augmentation stream of (seed, epoch)
        for batch in epoch_order(len(tr), steps_per_epoch, t["batch_size"], seed, epoch):
            x = augment(_batch(frames, tr[batch], device)).clamp_(0, 1)
            y = torch.from_numpy(labels[tr[batch]]).to(device)
            with autocast:
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if t["bn_recalibrate"]:
            recalibrate_batchnorm(model, frames, tr, t["batch_size"] * 2, device)
        val_metrics = split_metrics(labels[val], predict(model, frames, val, t["batch_size"] * 2, device),
                                    cache.class_names)
        score = select_score(val_metrics, t["select_metric"])
        state["history"].append(score)
        if score > state["best_score"]:
            state.update(best_score=score, best_epoch=epoch, best_val=val_metrics,
                         best_model={n: v.detach().cpu().clone() for n, v in model.state_dict().items()})
        state["epoch"] = epoch + 1
        if state_path is not None and time.monotonic() - last_save >= save_every_s and epoch + 1 < t["epochs"]:
            _save_state(state_path, model, opt, sched, state)
            last_save = time.monotonic()

    model.load_state_dict(state["best_model"])
    test_metrics = split_metrics(labels[te], predict(model, frames, te, t["batch_size"] * 2, device),
                                 cache.class_names)
    return {
        "metrics": {"val": state["best_val"], "test": test_metrics},
        "train": {"n_train": int(len(tr)), "epochs": t["epochs"], "steps_per_epoch": steps_per_epoch,
                  "selected_epoch": state["best_epoch"], "select_metric": t["select_metric"],
                  "val_history": [round(s, 6) for s in state["history"]], "device": str(device)},
    }


def _save_state(path: Path, model: nn.Module, opt, sched, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "state": copy.deepcopy(state)}, tmp)
    os.replace(tmp, path)
