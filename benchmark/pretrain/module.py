"""The LightningModule around an `SSLMethod`: views on the device, the loss, the optimizer and its
schedule, momentum (EMA) updates, and the guard that stops a run whose loss is not finite."""
from __future__ import annotations

import math
import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import TQDMProgressBar

from benchmark.augment import ViewAugment, augment
from benchmark.errors import UserError
from benchmark.kill_points import kill_point
from benchmark.pretrain.loader import FrameBatch
from methods.base import OPTIMIZERS

# Per-step seeds of the augmentation generator: distinct streams for distinct (seed, step).
_STEP_SEED_STRIDE = 1_000_003


class NonFiniteLossError(UserError):
    """The loss became NaN or inf; the run stopped and its last good checkpoint is kept."""


class PretrainModule(pl.LightningModule):
    def __init__(self, method: torch.nn.Module, views: tuple[ViewAugment, ViewAugment], resolution: int,
                 hparams: dict, batch_size: int, steps_per_epoch: int, total_steps: int, seed: int,
                 compile: bool = False):
        super().__init__()
        self.method = method
        self.views = views
        self.resolution = resolution
        self.hp = dict(hparams)
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = total_steps
        self.seed = seed
        self._loss_fn = torch.compile(method.loss) if compile else method.loss
        self._generator: torch.Generator | None = None
        self.last_loss: torch.Tensor | None = None  # detached, for the guard
        # A continued run's recipe (methods.base.CONTINUATION_OPTIONS); absent knobs leave every step as it was.
        self.frozen_bn = self.hp.get("encoder_bn") == "frozen"
        self.head_warmup_steps = int(self.hp.get("head_warmup_steps", 0))
        if self.frozen_bn:  # affine parameters out of the optimiser; statistics kept by eval mode (below)
            for bn in encoder_batchnorms(method):
                bn.requires_grad_(False)

    # -- one step -----------------------------------------------------------------------------
    def make_views(self, batch: FrameBatch) -> list[torch.Tensor]:
        if self._generator is None or self._generator.device != batch.anchors.device:
            self._generator = torch.Generator(device=batch.anchors.device)
        g = self._generator
        g.manual_seed(self.seed * _STEP_SEED_STRIDE + batch.step)  # views are a function of (seed, step)
        a = batch.anchors
        b = a if batch.positives is None else batch.positives
        # In fp32 even in a bf16-mixed step: the views are the data, not the model's arithmetic.
        with torch.autocast(a.device.type, enabled=False):
            if self.method.views == "augmented_and_clean":
                # The target shares the augmented view's crop and flip (same generator state), so the
                # decoder undoes the intensity/blur/noise corruption, not an unknowable crop.
                state = g.get_state()
                first = augment(a, self.views[0], self.resolution, g)
                g.set_state(state)
                views = [first, augment(a, self.views[0].geometry_only(), self.resolution, g)]
            else:
                views = [augment(a, self.views[0], self.resolution, g), augment(b, self.views[1], self.resolution, g)]
        if a.device.type == "cuda":
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        return views

    def training_step(self, batch: FrameBatch, batch_idx: int) -> torch.Tensor:
        if batch.step != self.global_step:
            raise RuntimeError(f"data step {batch.step} != trainer step {self.global_step}: the loader and "
                               "the trainer disagree, so a resume would not be exact")
        loss = self._loss_fn(self.make_views(batch))
        self.last_loss = loss.detach()
        return loss

    def encoder_frozen(self) -> bool:
        """The head warm-up: for its first `head_warmup_steps` steps the encoder does not change."""
        return self.global_step < self.head_warmup_steps

    def on_train_batch_start(self, batch, batch_idx) -> None:
        # Lightning puts every module in train mode when fitting starts (also on a resume): the encoder's
        # BatchNorms are set again before each step. In eval mode they normalise with their running
        # statistics and leave them unchanged.
        if self.frozen_bn or self.head_warmup_steps:
            keep = self.frozen_bn or self.encoder_frozen()
            for bn in encoder_batchnorms(self.method):
                bn.train(not keep)

    def on_before_optimizer_step(self, optimizer) -> None:
        # During the head warm-up the encoder's gradients are dropped after the backward pass (under DDP,
        # after their all-reduce), so the optimiser skips its parameters: no step, no weight decay, no
        # momentum state to carry into the first step it trains.
        if self.encoder_frozen():
            for param in self.method.encoder.parameters():
                param.grad = None

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        kill_point("pretrain_step")  # Lightning runs this after the callbacks: the step's checkpoint is saved

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # Here, not in on_train_batch_end: the EMA update must be in the checkpoint of this step.
        # Lightning counts this step only after the hook: global_step = k, the 0-based step of BYOL's τ_k.
        self.method.update_momentum(min(1.0, self.global_step / self.total_steps))

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self):
        from lightly.utils.scheduler import cosine_warmup_schedule

        opt = build_optimizer(self.method, self.hp, self.batch_size * self.trainer.world_size)
        # Warm-up is a fraction of the run (the budget is in steps), so every run keeps most of its
        # steps at the peak rate and in the cosine decay.
        warmup = int(round(float(self.hp.get("warmup", 0.0)) * self.total_steps))
        total = self.total_steps

        def cosine(step: int) -> float:
            return cosine_warmup_schedule(step, total, 1.0, 0.001, warmup, 0.0)

        lambdas = [(lambda step: 1.0) if g.get("fixed_lr") else cosine for g in opt.param_groups]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=lambdas)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def scaled_lr(hparams: dict, global_batch: int) -> float:
    """The method's base rate (given for a batch of 256) at `global_batch`: linear scaling (Goyal et
    al. 2017) by default, or square-root scaling where the method's paper gives it for small
    batches (SimCLR, Appendix B.1: lr = 0.075·√batch)."""
    rule = str(hparams.get("lr_scaling", "linear"))
    if rule == "sqrt":
        return float(hparams["lr"]) * math.sqrt(global_batch / 256)
    if rule == "linear":
        return float(hparams["lr"]) * global_batch / 256
    raise UserError(f"lr_scaling must be 'linear' or 'sqrt', got {rule!r}")


def build_optimizer(method: torch.nn.Module, hparams: dict, global_batch: int) -> torch.optim.Optimizer:
    """The method's optimiser over its parameter groups (the SSLMethod contract: "lr_scale" multiplies
    a group's rate, "fixed_lr" keeps it off the schedule, groups with weight decay 0 are not adapted
    by LARS).

    LARS is timm's `Lars` with LARC clipping (`trust_clip`, NVIDIA apex's LARC): a layer's rate is
    min(trust·‖w‖/‖g‖, lr), so a layer moves by at most `trust_coefficient` of its norm per step and
    never faster than plain SGD at `lr`. Without the clip (lightly's LARS) the per-step move is
    lr·trust·‖w‖ — 7.5e-5 of the weights at batch 64 with trust 1e-3 — and short runs leave the
    encoder where it started. timm's also computes the trust ratios on the device, with no host sync
    per parameter. solo-learn trains every LARS method this way (trust 0.02, clip, biases and norms
    excluded). The override `lars_clip=false` (methods.base.OPTIMIZER_OPTIONS) drops the clip, for the
    papers' own recipes.
    """
    name = str(hparams.get("optimizer", "sgd")).lower()
    if name not in OPTIMIZERS:
        raise UserError(f"optimizer {name!r} is not one of {', '.join(OPTIMIZERS)} (method {method.name})")
    lr = scaled_lr(hparams, global_batch)
    wd = float(hparams.get("weight_decay", 0.0))
    groups = continuation_groups(method, method.parameter_groups(), hparams)
    for group in groups:
        group["lr"] = lr * float(group.get("lr_scale", 1.0))
    momentum = float(hparams.get("optimizer_momentum", 0.9))
    if name == "lars":
        from timm.optim import Lars

        return Lars(groups, lr=lr, momentum=momentum, weight_decay=wd,
                    trust_coeff=float(hparams.get("trust_coefficient", 0.02)),
                    trust_clip=bool(hparams.get("lars_clip", True)))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=wd)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)


def encoder_batchnorms(method: torch.nn.Module) -> list[torch.nn.Module]:
    """The BatchNorm layers of the method's encoder (not of its heads or momentum copies)."""
    return [m for m in method.encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def continuation_groups(method: torch.nn.Module, groups: list[dict], hparams: dict) -> list[dict]:
    """The method's parameter groups as a continued run's recipe changes them: `encoder_lr_scale` splits
    each group into its heads' part and its encoder's part, whose rate it scales; `encoder_bn=frozen`
    leaves out the parameters it froze. Without those knobs the groups are returned as they are, so
    every other run's optimiser (and its saved state) is what it was."""
    scale = hparams.get("encoder_lr_scale")
    frozen = hparams.get("encoder_bn") == "frozen"
    if scale is None and not frozen:
        return groups
    encoder = {id(p) for p in method.encoder.parameters()}
    out = []
    for group in groups:
        params = [p for p in group["params"] if p.requires_grad or not frozen]
        if scale is None:
            if params:
                out.append({**group, "params": params})
            continue
        heads = [p for p in params if id(p) not in encoder]
        own = [p for p in params if id(p) in encoder]
        if heads:
            out.append({**group, "params": heads})
        if own:
            out.append({**group, "params": own, "name": f"{group.get('name', 'group')}/encoder",
                        "lr_scale": float(group.get("lr_scale", 1.0)) * float(scale)})
    return out


class FiniteLossGuard(pl.Callback):
    """Stops the run on a NaN/inf loss before any checkpoint holds it; logs loss and views/s.

    Lightning runs checkpoint callbacks last, so this check precedes ModelCheckpoint. On a GPU the
    loss is read one step late (a non-blocking copy, long finished by then) so that the host never
    waits for the device, except on steps where a checkpoint is due: those are checked at once.
    """

    def __init__(self, method_name: str, checkpoint_dir: str, every_n_steps: int, log_every_n_steps: int = 1,
                 views_per_sample: int = 2):
        self.method_name = method_name
        self.checkpoint_dir = checkpoint_dir
        self.every_n_steps = every_n_steps
        # `LightningModule.log` turns a float into a device tensor, a blocking copy on a GPU: the
        # loggers get a value every N steps, the progress bar reads ours (ProgressBar below) each step.
        self.log_every_n_steps = log_every_n_steps
        self.last_value: float | None = None
        self.rate: float | None = None
        self.views_per_sample = views_per_sample
        self._pending: tuple[int, int, torch.Tensor, torch.cuda.Event | None] | None = None
        self._t: float | None = None
        # For the mean rate over this process's second half of steps: (time, step) at its midpoint and now.
        self._midpoint: int | None = None
        self._mark: tuple[float, int] | None = None
        self._latest: tuple[float, int] | None = None

    def on_train_batch_end(self, trainer, pl_module: PretrainModule, outputs, batch, batch_idx) -> None:
        loss = pl_module.last_loss
        if loss is None:
            return
        step, epoch = pl_module.global_step, trainer.current_epoch  # global_step counts this step already
        if loss.device.type == "cuda":
            host = torch.empty((), dtype=torch.float32, pin_memory=True)
            host.copy_(loss.float(), non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host, event = loss.float(), None
        previous, self._pending = self._pending, (step, epoch, host, event)
        if previous is not None:
            self._check(*previous)
        checkpoint_due = step % self.every_n_steps == 0 or (batch_idx + 1) == trainer.num_training_batches \
            or step >= pl_module.total_steps
        if event is None or checkpoint_due:
            self._check(*self._pending)
            self._pending = None
        now = time.perf_counter()
        if self._midpoint is None:
            self._midpoint = max(step + 1, (step + pl_module.total_steps) // 2)
        if self._mark is None and step >= self._midpoint:
            self._mark = (now, step)
        self._latest = (now, step)
        if self._t is not None:
            rate = self.views_per_sample * pl_module.batch_size * trainer.world_size / max(now - self._t, 1e-9)
            self.rate = rate if self.rate is None else 0.9 * self.rate + 0.1 * rate
        self._t = now
        if step % self.log_every_n_steps == 0 and self.last_value is not None:
            values = {"loss": self.last_value, "lr": trainer.optimizers[0].param_groups[0]["lr"]}
            if self.rate is not None:
                values["views_s"] = self.rate
            pl_module.log_dict(values, on_step=True, on_epoch=False)

    def views_per_second(self, pl_module: PretrainModule, world: int) -> float | None:
        """Mean end-to-end rate over the second half of this process's steps (the first ones carry
        start-up costs: allocator, cudnn autotuning, compilation)."""
        if self._mark is None or self._latest is None or self._latest[1] <= self._mark[1]:
            return None
        (t0, s0), (t1, s1) = self._mark, self._latest
        return self.views_per_sample * pl_module.batch_size * world * (s1 - s0) / (t1 - t0)

    def on_train_end(self, trainer, pl_module) -> None:
        if self._pending is not None:
            self._check(*self._pending)
            self._pending = None

    def _check(self, step: int, epoch: int, host: torch.Tensor, event: torch.cuda.Event | None) -> None:
        if event is not None:
            event.synchronize()
        value = float(host)
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"pretraining {self.method_name} stopped: the loss became {value} at step {step} "
                f"(epoch {epoch}); the last good checkpoint is kept in {self.checkpoint_dir}. Lower the "
                "learning rate (--set lr=...) or train in fp32 (precision 32), then run again")
        self.last_value = value

    def state_dict(self) -> dict:
        return {}


class ProgressBar(TQDMProgressBar):
    """Lightning's bar, showing the guard's host-side loss and views/s (no device reads)."""

    def __init__(self, guard: FiniteLossGuard, refresh_rate: int = 1):
        super().__init__(refresh_rate=refresh_rate)
        self.guard = guard

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        if self.guard.last_value is not None:
            metrics["loss"] = f"{self.guard.last_value:.4g}"
        if self.guard.rate is not None:
            metrics["views/s"] = f"{self.guard.rate:,.0f}"
        return metrics
