"""The fine-tune protocol: the whole network (encoder + linear head) trained on the label subset.

LP-FT: the head starts as a linear probe of the frozen initial encoder; then the whole network is
trained at every learning rate of the protocol's grid (SGD, or AdamW, with linear warm-up and cosine
decay per step), class-weighted cross-entropy, RandAugment-like intensity/geometry + flips on whole
batches on the device (kornia: a maintained library; the engine's `benchmark.augment` is tuned for
SSL views — solarize, strong crops — while this protocol needs the milder set whose every parameter
the protocol file fixes). The (learning rate, epoch) kept is the best on validation (`select_metric`,
macro-F1), epoch 0 — the probe-initialised model — included; the test split is scored once with it.

A plain loop rather than a Lightning Trainer: the grid is many tiny jobs (at 1 % labels a job is a
few dozen steps) where the Trainer's start-up would dominate. Resume: the job's state (model,
optimizer, schedule, learning rate and epoch reached, best so far) is saved atomically at epoch ends
to `state_path`, and a rerun continues from it; the data order and augmentation stream of epoch e
are functions of (seed, e), so a resumed job trains exactly as an uninterrupted one.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.data.cache import FrameCache
from benchmark.device import default_device
from benchmark.kill_points import kill_point
from leaderboard.atomic import atomic_path
from protocols.linear_probe import class_weights, training_subset
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


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


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


def linear_probe_head(model: Classifier, frames: np.ndarray, tr: np.ndarray, val: np.ndarray, labels: np.ndarray,
                      class_names: list[str], head: dict, class_weighted: bool, select_metric: str,
                      batch_size: int, device: torch.device) -> dict:
    """LP-FT's first stage (Kumar et al., ICLR 2022): fit the head as a linear probe on the frozen
    initial encoder's features of the training subset (L2 strength chosen on validation), so that
    fine-tuning starts from a head that fits the features instead of a random one, which would
    distort them. With `head.standardize` the probe is fitted on standardised features and the
    standardisation folded into the head's weights and bias (protocol v2); otherwise on the raw ones."""
    from protocols.linear_probe import fit_logistic_regression, standardizer

    model.eval()
    feats = extract(model.encoder, frames, np.concatenate([tr, val]), batch_size, device)
    x = feats.to(torch.float32)
    n_tr = len(tr)
    if head["standardize"]:
        mean, scale, _ = standardizer(x, np.arange(n_tr))
    else:
        # On the raw features, as Kumar et al. fit it: a head fitted on standardised features carries
        # the 1/σ of each feature into its weights (σ of EfficientNet-Lite0's pooled features is ~0.03),
        # and the encoder's gradients through it grow by as much.
        mean = x.new_zeros(x.shape[1])
        scale = torch.ones_like(mean)
    z = (x - mean) / scale
    k = len(class_names)
    y = torch.from_numpy(labels[tr].astype(np.int64)).to(device)
    w = torch.tensor(class_weights(labels[tr], k), dtype=torch.float32, device=device) if class_weighted else None
    grid = sorted(head["l2_grid"], reverse=True)  # strongest first: a tie keeps the simpler model
    weight, bias, solver = fit_logistic_regression(z[:n_tr], y, k, grid, weights=w, max_iter=head["max_iter"],
                                                   tolerance=head["tolerance"])
    with torch.no_grad():
        pred = (torch.einsum("nd,gdk->gnk", z[n_tr:], weight) + bias[:, None, :]).argmax(-1).cpu().numpy()
    scores = [select_score(split_metrics(labels[val], p, class_names), select_metric) for p in pred]
    best = int(np.argmax(scores))
    with torch.no_grad():
        w_best = weight[best] / scale[:, None]  # D×K, on raw features
        model.head.weight.copy_(w_best.T.to(model.head.weight.dtype))
        model.head.bias.copy_((bias[best] - mean @ w_best).to(model.head.bias.dtype))
    return {"l2": grid[best], "solver": solver}


@torch.no_grad()
def extract(encoder: nn.Module, frames: np.ndarray, positions: np.ndarray, batch_size: int,
            device: torch.device) -> torch.Tensor:
    encoder.eval()
    out = [encoder(_batch(frames, positions[i:i + batch_size], device)).float()
           for i in range(0, len(positions), batch_size)]
    return torch.cat(out)


def run_finetune(make_encoder: Callable[[], nn.Module], cache: FrameCache, spec: ProtocolSpec,
                 fraction: float, seed: int, state_path: Path | None = None,
                 device: torch.device | None = None, progress: bool = True,
                 save_every_s: float = SAVE_EVERY_S, extra_tests: tuple[str, ...] = ()) -> dict:
    """One fine-tune job → {"metrics": {"val", "test"}, "train": {...}} (the result's own fields).

    The head starts as a linear probe of the initial encoder (LP-FT); then, for every learning rate
    of the protocol's `lr_grid`, the whole network is trained from that same start. The (learning
    rate, epoch) kept is the best on validation, epoch 0 (the probe-initialised model before any
    fine-tuning step) included, so fine-tuning is never chosen over the probe it starts from unless
    validation prefers it. The test split is scored once, with the kept weights, as is each split of
    `extra_tests` under its own name in "metrics" (the cross-scanner protocol's in-scanner test set).
    """
    device = device or default_device()
    t, a = spec.settings["train"], spec.settings["augment"]
    labels = cache.index["label"].to_numpy()
    k = cache.num_classes
    tr = training_subset(cache, fraction, seed, spec)
    val, te = cache.labelled_positions("val"), cache.labelled_positions("test")
    frames = cache.frames
    eval_batch = t["batch_size"] * 2

    torch.manual_seed(seed)
    model = Classifier(make_encoder(), k).to(device)
    head_report = None
    if spec.settings["head"]["init"] == "linear_probe":
        head_report = linear_probe_head(model, frames, tr, val, labels, cache.class_names, spec.settings["head"],
                                        t["class_weighted"], t["select_metric"], eval_batch, device)
    start = {n: v.detach().clone() for n, v in model.state_dict().items()}
    steps_per_epoch = max(math.ceil(len(tr) / t["batch_size"]), t["min_steps_per_epoch"])
    total = steps_per_epoch * t["epochs"]
    weight = torch.tensor(class_weights(labels[tr], k), dtype=torch.float32, device=device) \
        if t["class_weighted"] else None
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    augment = build_augment(a, cache.resolution).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def evaluate(recalibrate: bool = t["bn_recalibrate"]) -> dict:
        if recalibrate:
            recalibrate_batchnorm(model, frames, tr, eval_batch, device)
        return split_metrics(labels[val], predict(model, frames, val, eval_batch, device), cache.class_names)

    lrs = list(t["lr_grid"])
    saved = torch.load(state_path, map_location=device, weights_only=True) \
        if state_path is not None and Path(state_path).exists() else None
    if saved is not None:
        state = saved["state"]
        if progress:
            print(f"resuming fine-tune at lr {lrs[state['run']]:g}, epoch {state['epoch']} from {state_path}",
                  file=sys.stderr)
    else:
        # Epoch 0: the probe-initialised model before any fine-tuning step, shared by every lr, with the
        # BatchNorm statistics the probe's features were computed with.
        first = evaluate(recalibrate=False)
        state = {"run": 0, "epoch": 0, "epoch0": select_score(first, t["select_metric"]), "best_lr": None,
                 "best_epoch": 0, "best_val": first, "history": {},
                 "best_model": {n: v.detach().cpu().clone() for n, v in model.state_dict().items()}}
        state["best_score"] = state["epoch0"]
    last_save = time.monotonic()

    for run in range(state["run"], len(lrs)):
        lr = lrs[run]
        model.load_state_dict(start)
        opt = make_optimizer(model, t["optimizer"], lr, t["weight_decay"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, steps_per_epoch * t["warmup_epochs"]))
        first_epoch = 0
        if saved is not None and saved["state"]["run"] == run:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            first_epoch = state["epoch"]
        history = state["history"].setdefault(f"{lr:g}", [])
        for epoch in range(first_epoch, t["epochs"]):
            model.train()
            torch.manual_seed(seed * 1_000_003 + epoch)  # the augmentation stream of (seed, epoch), for every lr
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
            val_metrics = evaluate()
            score = select_score(val_metrics, t["select_metric"])
            history.append(round(score, 6))
            if score > state["best_score"]:
                state.update(best_score=score, best_lr=lr, best_epoch=epoch + 1, best_val=val_metrics,
                             best_model={n: v.detach().cpu().clone() for n, v in model.state_dict().items()})
            state.update(run=run, epoch=epoch + 1)
            if state_path is not None and time.monotonic() - last_save >= save_every_s:
                _save_state(state_path, model, opt, sched, state)
                last_save = time.monotonic()
            kill_point("finetune_epoch")

    model.load_state_dict(state["best_model"])
    metrics = {"val": state["best_val"]}
    for split in ("test", *extra_tests):
        rows = te if split == "test" else cache.labelled_positions(split)
        metrics[split] = split_metrics(labels[rows], predict(model, frames, rows, eval_batch, device),
                                       cache.class_names)
    return {
        "metrics": metrics,
        "train": {"n_train": int(len(tr)), "epochs": t["epochs"], "steps_per_epoch": steps_per_epoch,
                  "lr_grid": lrs, "selected_lr": state["best_lr"], "selected_epoch": state["best_epoch"],
                  "select_metric": t["select_metric"], "val_epoch0": round(state["epoch0"], 6),
                  "val_history": state["history"], "head_init": head_report, "device": str(device)},
    }


def _save_state(path: Path, model: nn.Module, opt, sched, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "state": copy.deepcopy(state)}, tmp)
