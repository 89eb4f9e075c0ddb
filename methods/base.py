"""The contract every SSL method implements: heads + loss around a shared encoder.

A method gets views already augmented on the device (B×1×H×W floats in [0, 1]) and returns a scalar
loss; the pretraining engine owns the data, the optimiser, the schedules and the checkpoints.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from benchmark.backbones import Encoder
from benchmark.errors import UserError

FAMILIES = ("reconstruction", "contrastive", "distillation", "information")
VIEWS = ("two_augmented", "augmented_and_clean")
OPTIMIZERS = ("lars", "sgd", "adamw")
AUGMENTATIONS = ("asymmetric", "symmetric")  # benchmark.augment.default_views
LR_SCALINGS = ("linear", "sqrt")
# Every method declares these, so the engine can build optimiser and loader from defaults alone.
# `lr` is the rate for a batch of 256 (scaled to the real batch by `lr_scaling`, linear unless the
# method sets "sqrt"); `warmup` is the fraction of the run's steps spent warming up.
REQUIRED_DEFAULTS = ("optimizer", "lr", "weight_decay", "warmup", "batch_size")
# Knobs of the engine's optimiser that every method takes as an override without declaring them: they
# enter a run's hyper-parameters (and its config key) only when given, so declaring one here changes no
# existing run. `lars_clip`: LARS with LARC clipping (a layer moves by at most `trust_coefficient` of its
# norm per step, solo-learn's recipe; the default) or without it (the step is lr · trust · ‖w‖, as in the
# Barlow Twins and BYOL papers' LARS; with trust 1e-3 at small batches such steps barely move a network).
OPTIMIZER_OPTIONS = {"lars_clip": True}
# Knobs of how a run continues from pretrained (ImageNet) weights, which every method takes as overrides
# and which, like OPTIMIZER_OPTIONS, enter a run's hyper-parameters (and config key) only when given. The
# values here are the engine's behaviour without them: the method's recipe unchanged. A preset's
# `[pretrain.continued]` table gives a track's continued runs their recipe (protocols.presets); which
# values suit continued runs is not chosen yet.
CONTINUATION_OPTIONS = {
    "encoder_lr_scale": 1.0,   # the encoder's learning rate = this × the method's (heads keep the method's)
    "encoder_bn": "train",     # "train": BatchNorm as always; "frozen": statistics and affine of the start kept
    "head_warmup_steps": 0,    # the first N steps train the heads alone: the encoder (and its BN) unchanged
}
CONTINUATION_NOTES = {
    "encoder_lr_scale": "a rate made for random weights can erase pretrained features in its first steps; "
                        "< 1 moves the encoder more gently than the heads (0: the encoder never moves): "
                        "discriminative rates, Howard & Ruder, ACL 2018",
    "encoder_bn": "frozen keeps the start's BatchNorm statistics and affine parameters through training and in "
                  "the checkpoint (no re-estimation on the pool), as the imagenet baseline has them; as detection "
                  "fine-tunes ImageNet backbones (He et al., ICCV 2019, 'Rethinking ImageNet pre-training'). "
                  "On the cpu track re-estimating them on the pool alone took ImageNet's pool k-NN from 67.0 to 28.1",
    "head_warmup_steps": "untrained heads send large, random gradients into a pretrained encoder; N steps "
                         "with the encoder frozen let them fit first (counted in the run's budget): linear probing "
                         "then fine-tuning, Kumar et al., ICLR 2022",
}
ENCODER_BN_MODES = ("train", "frozen")
# Every engine knob a method takes without declaring it.
ENGINE_OPTIONS = {**OPTIMIZER_OPTIONS, **CONTINUATION_OPTIONS}
# Resolution of the momentum schedule: progress in [0, 1] is mapped onto this many steps.
_SCHEDULE_STEPS = 10_000


class SSLMethod(nn.Module):
    """Base class of a registered SSL method (see CONTRIBUTING.md for a worked example).

    Parameter groups returned by `parameter_groups` are plain optimiser groups; besides "params" and
    "weight_decay" they may carry "name", "lr_scale" (multiplies the scheduled learning rate) and
    "fixed_lr" (True: the group keeps the base learning rate, no cosine decay).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str]
    views: ClassVar[str] = "two_augmented"
    augmentations: ClassVar[str] = "asymmetric"
    defaults: ClassVar[dict] = {}
    notes: ClassVar[dict[str, str]] = {}
    # Hyper-parameters added to `defaults` after runs of the method existed, with the value those runs had:
    # left out of a run's config key at that value (benchmark.pretrain.config), so earlier runs keep their
    # keys and their checkpoints are found again.
    defaults_since: ClassVar[dict] = {}

    def __init__(self, encoder: Encoder, **hparams):
        super().__init__()
        self.hparams = resolve_hparams(type(self), hparams)
        self.encoder = encoder

    def loss(self, views: list[Tensor]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement loss(views)")

    def setting_warnings(self, global_batch: int) -> list[str]:
        """Settings of this run known to go wrong together at this global batch (printed as warnings before
        pretraining starts; the run goes on). A method with such a known pitfall overrides it."""
        return []

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) modules whose target follows the online one by EMA; [] if none."""
        return []

    def update_momentum(self, progress: float) -> None:
        """EMA step of every momentum pair; the momentum rises from `momentum_base` to 1 on a cosine (BYOL)."""
        pairs = self.momentum_pairs()
        if not pairs:
            return
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        progress = min(max(float(progress), 0.0), 1.0)
        m = cosine_schedule(round(progress * _SCHEDULE_STEPS), _SCHEDULE_STEPS + 1,
                            float(self.hparams["momentum_base"]), 1.0)
        for online, target in pairs:
            update_momentum(online, target, m)

    def parameter_groups(self) -> list[dict]:
        """Weights with weight decay; biases and norm parameters without (and so, under lightly's LARS,
        without trust-ratio adaptation), as SimCLR/BYOL/Barlow Twins/VICReg train them."""
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        groups = [{"name": "weights", "params": decay},
                  {"name": "bias_norm", "params": no_decay, "weight_decay": 0.0}]
        return [g for g in groups if g["params"]]

    def set_gather_distributed(self, enabled: bool) -> None:
        """Let lightly's losses (and memory banks) gather across processes; the engine calls this under DDP."""
        for module in self.modules():
            if hasattr(module, "gather_distributed"):
                module.gather_distributed = bool(enabled)


def fp32_loss(criterion: Callable[..., Tensor], *tensors: Tensor) -> Tensor:
    """`criterion` on fp32 copies with autocast off: exp/log of logits and covariance sums lose
    precision or overflow in bf16, so losses run in fp32 even in a bf16-mixed step."""
    with torch.autocast(device_type=tensors[0].device.type, enabled=False):
        return criterion(*(t.float() for t in tensors))


def check_continuation(knobs: dict) -> None:
    """A continued recipe (a preset's `[pretrain.continued]`, a candidate of protocols/continued_recipe.toml):
    only CONTINUATION_OPTIONS' knobs, with values of their types and ranges; a UserError naming the first
    that is not."""
    unknown = sorted(set(knobs) - set(CONTINUATION_OPTIONS))
    if unknown:
        raise UserError(f"unknown knob(s) {', '.join(map(repr, unknown))}: a continued recipe's knobs are those "
                        f"of every method, {', '.join(CONTINUATION_OPTIONS)}")
    scale, bn, warmup = (knobs.get(k, d) for k, d in CONTINUATION_OPTIONS.items())
    if isinstance(scale, bool) or not isinstance(scale, int | float) or scale < 0:
        raise UserError(f"encoder_lr_scale multiplies the encoder's learning rate and must be a number >= 0, "
                        f"got {scale!r}")
    if bn not in ENCODER_BN_MODES:
        raise UserError(f"encoder_bn must be one of {', '.join(ENCODER_BN_MODES)}, got {bn!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise UserError(f"head_warmup_steps must be an integer >= 0, got {warmup!r}")


def resolve_hparams(cls: type[SSLMethod], overrides: dict) -> dict:
    """The method's defaults updated with `overrides`; unknown names and wrong types are a UserError."""
    unknown = sorted(set(overrides) - set(cls.defaults) - set(ENGINE_OPTIONS))
    if unknown:
        raise UserError(f"method {cls.name!r} has no hyper-parameter(s) {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(cls.defaults))} (and the optimiser's "
                        f"{', '.join(OPTIMIZER_OPTIONS)}, and a continued run's {', '.join(CONTINUATION_OPTIONS)})")
    resolved = dict(cls.defaults)
    for key, value in overrides.items():
        default = cls.defaults.get(key, ENGINE_OPTIONS.get(key))
        if isinstance(default, bool) or default is None:
            ok = default is None or isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise UserError(f"method {cls.name!r}: hyper-parameter {key} expects "
                            f"{type(default).__name__} (default {default!r}), got {value!r}")
        resolved[key] = value
    if resolved["optimizer"] not in OPTIMIZERS:
        raise UserError(f"method {cls.name!r}: optimizer must be one of {', '.join(OPTIMIZERS)}, "
                        f"got {resolved['optimizer']!r}")
    if resolved.get("lr_scaling", "linear") not in LR_SCALINGS:
        raise UserError(f"method {cls.name!r}: lr_scaling must be one of {', '.join(LR_SCALINGS)}, "
                        f"got {resolved['lr_scaling']!r}")
    if resolved.get("encoder_bn", "train") not in ENCODER_BN_MODES:
        raise UserError(f"method {cls.name!r}: encoder_bn must be one of {', '.join(ENCODER_BN_MODES)}, "
                        f"got {resolved['encoder_bn']!r}")
    if float(resolved.get("encoder_lr_scale", 1.0)) < 0:
        raise UserError(f"method {cls.name!r}: encoder_lr_scale multiplies the encoder's learning rate and must be "
                        f">= 0, got {resolved['encoder_lr_scale']!r}")
    if int(resolved.get("head_warmup_steps", 0)) < 0:
        raise UserError(f"method {cls.name!r}: head_warmup_steps must be an integer >= 0, "
                        f"got {resolved['head_warmup_steps']!r}")
    if not 0.0 <= float(resolved["warmup"]) < 1.0:
        raise UserError(f"method {cls.name!r}: warmup is a fraction of the run's steps in [0, 1), "
                        f"got {resolved['warmup']!r}")
    return resolved
