"""Can a method's recipe lower its loss on one fixed batch?

The first check when a method does not learn (Karpathy, "A recipe for training neural networks": overfit
one batch): the same two views of the same frames at every step, the method built as a pretraining run
builds it (its hyper-parameters, parameter groups and optimiser: `build_optimizer`), at its peak rate
with no schedule. A loss that cannot fall there points at the loss or the optimiser, not at the data;
a plain Adam run beside it tells the two apart. Barlow Twins' collapse on the `cpu` track was found this
way (README, "Barlow Twins' collapse"): its recipe took the loss 244 → 396, Adam → 28.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BATCH = 64
STEPS = 60


@dataclass(frozen=True)
class OneBatchFit:
    method: str
    optimizer: str  # "recipe" (the method's own, as pretraining builds it) or "adam (lr …)"
    losses: list[float]  # the loss before each step

    @property
    def change(self) -> float:
        """The last loss relative to the first, −1…∞: −0.9 is a fall by 90 %."""
        return self.losses[-1] / self.losses[0] - 1 if self.losses[0] else float("nan")

    def line(self, every: int = 6) -> str:
        shown = " ".join(f"{v:.4g}" for v in self.losses[::every])
        return (f"{self.method}, {self.optimizer}: loss {self.losses[0]:.4g} → {self.losses[-1]:.4g} "
                f"({self.change:+.0%}) in {len(self.losses)} steps  [every {every}th: {shown}]")


def fit_one_batch(method_name: str, frames: np.ndarray, resolution: int, *, steps: int = STEPS,
                  hparams: dict | None = None, adam_lr: float | None = None, backbone: str = "efficientnet_lite0",
                  seed: int = 0, memory_format: str = "channels_last") -> OneBatchFit:
    """`steps` optimiser steps of `method_name` on the two views of `frames` (B×H×W uint8), drawn once.
    `adam_lr` replaces the method's optimiser by Adam at that rate; otherwise it is the method's own at
    its peak rate for this batch size."""
    import torch

    from benchmark.augment import default_views
    from benchmark.backbones import build_backbone
    from benchmark.device import channels_last
    from benchmark.errors import UserError
    from benchmark.pretrain.loader import FrameBatch
    from benchmark.pretrain.module import PretrainModule, build_optimizer
    from methods.registry import get_method

    if steps < 2:
        raise UserError(f"--steps must be at least 2 to compare a first and a last loss, got {steps}")
    cls = get_method(method_name)
    torch.manual_seed(seed)
    method = cls(build_backbone(backbone, init="random"), **(hparams or {}))
    if channels_last("cpu", memory_format):
        method = method.to(memory_format=torch.channels_last)
    batch = len(frames)
    # The engine's own view-making (PretrainModule.make_views), once: step 0 of seed `seed`.
    module = PretrainModule(method, default_views(cls.augmentations), resolution, method.hparams, batch,
                            steps_per_epoch=1, total_steps=steps, seed=seed)
    anchors = torch.from_numpy(np.ascontiguousarray(frames))
    views = module.make_views(FrameBatch(step=0, anchors=anchors, positives=None))
    if adam_lr is None:
        optimizer, name = build_optimizer(method, method.hparams, batch), "recipe"
    else:
        optimizer, name = torch.optim.Adam(method.parameters(), lr=adam_lr), f"adam (lr {adam_lr:g})"
    losses = []
    method.train()
    for step in range(steps):
        loss = method.loss(views)
        if not torch.isfinite(loss):
            raise UserError(f"{method_name}, {name}: the loss became {float(loss)} at step {step} of one batch")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.update_momentum(min(1.0, step / steps))  # the EMA methods' targets, as PretrainModule steps them
        losses.append(float(loss.detach()))
    return OneBatchFit(method_name, name, losses)


def pool_batch(frames: np.ndarray, positions: np.ndarray, size: int = BATCH, seed: int = 0) -> np.ndarray:
    """`size` frames of the pool's pretraining positions, drawn once with `seed` (in pool order)."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(positions, min(size, len(positions)), replace=False))
    return np.asarray(frames[chosen])
