"""Batched augmentation on the training device: uint8 frames in, B×1×S×S float views in [0, 1] out.

Every random choice is drawn per sample from a `torch.Generator`, so a batch's views are a pure
function of (frames, generator seed): the engine seeds it from (seed, step), which makes a resumed
run draw the same views as an uninterrupted one.

Ultrasound-appropriate operations only: random resized crop, flips, brightness/contrast/gamma,
Gaussian blur, speckle-like multiplicative noise, solarize; no hue or saturation jitter (grayscale).

Kernels, chosen by measurement on the 2-core CPU machine (128 frames of 128² → 64² views; GPU
figures come from `make perf`, tests/perf/test_pretrain_throughput.py, which times the same choices):
- crop: `F.grid_sample` with a per-sample affine, the flips folded into its sign, took 3.9 ms on two
  threads against 18.9 ms for `torchvision.ops.roi_align` with adaptive (anti-aliasing) sampling and
  6.0 ms with one sample per bin (on one busy thread: 11.4 / 30.2 / 6.3 ms). grid_sample it is: it
  scales with threads and does crop and flip in one pass; an integer area-downscale first limits its
  aliasing when the cached frames are much larger than the views.
- blur: our separable per-sample kernel as one grouped conv took 0.74 ms against 1.05 ms for
  `kornia.filters.gaussian_blur2d` with per-sample sigma (same maths; 1.6 vs 2.9 ms on one busy
  thread). kornia's `augmentation` module is not used because it draws from the global RNG, not
  a generator, which would break the (seed, step) determinism.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F

from benchmark.errors import UserError

# The blur sigma range is given in pixels of a 224-px view and scaled with the view size, so a
# preset keeps its meaning across resolutions (BYOL/SimCLR quote 224-px values).
_SIGMA_REFERENCE_SIZE = 224


@dataclass(frozen=True)
class ViewAugment:
    """Strengths of one view's augmentation. Probabilities are per sample."""

    crop_scale: tuple[float, float] = (0.25, 1.0)  # area fraction; milder than SimCLR's 0.08: the fan is part of the frame
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    vflip_p: float = 0.0  # the probe sits at the top of the sector; upside-down frames do not occur
    intensity_p: float = 0.8
    brightness: float = 0.4  # factor in [1-b, 1+b]
    contrast: float = 0.4  # factor in [1-c, 1+c] around the frame mean
    gamma: float = 0.3  # exponent in [1/(1+g), 1+g] (log-uniform): gain/TGC differences between scanners
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # pixels at 224 px
    noise_p: float = 0.5
    noise_std: float = 0.2  # multiplicative speckle x·(1 + σ·n), σ ~ U(0, noise_std)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5

    @classmethod
    def identity(cls) -> ViewAugment:
        """No augmentation: the whole frame resized to the view size."""
        return cls(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0, vflip_p=0.0, intensity_p=0.0,
                   blur_p=0.0, noise_p=0.0, solarize_p=0.0)

    def geometry_only(self) -> ViewAugment:
        """The same crop and flips, no intensity, blur, noise or solarize: with the generator in the same
        state, `augment` then draws the same boxes (the geometry uses the first uniforms), which is the
        clean reconstruction target that matches an augmented view."""
        return replace(self, intensity_p=0.0, blur_p=0.0, noise_p=0.0, solarize_p=0.0)

    def validate(self, name: str = "augment") -> ViewAugment:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_p") and not 0.0 <= v <= 1.0:
                raise UserError(f"{name}.{f.name} is a probability and must be in [0, 1], got {v}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise UserError(f"{name}.crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise UserError(f"{name}.crop_ratio must satisfy 0 < min <= max, got {self.crop_ratio}")
        if min(self.brightness, self.contrast, self.gamma, self.noise_std) < 0 or self.brightness >= 1 \
                or self.contrast >= 1:
            raise UserError(f"{name}: brightness and contrast must be in [0, 1), gamma and noise_std >= 0")
        if not 0 <= self.blur_sigma[0] <= self.blur_sigma[1]:
            raise UserError(f"{name}.blur_sigma must satisfy 0 <= min <= max, got {self.blur_sigma}")
        return self


def default_views(recipe: str = "asymmetric") -> tuple[ViewAugment, ViewAugment]:
    """The two views of a method's augmentation recipe (`SSLMethod.augmentations`):

    - "asymmetric" (BYOL; Barlow Twins and VICReg use it too): view 1 always blurred, never
      solarized; view 2 rarely blurred, sometimes solarized;
    - "symmetric" (SimCLR, MoCo v2, SimSiam): both views blurred with probability 0.5, never
      solarized — those papers use no solarization.
    """
    if recipe == "asymmetric":
        return ViewAugment(blur_p=1.0, solarize_p=0.0), ViewAugment(blur_p=0.1, solarize_p=0.2)
    if recipe == "symmetric":
        view = ViewAugment(blur_p=0.5, solarize_p=0.0)
        return view, view
    raise UserError(f"unknown augmentation recipe {recipe!r}; known: {', '.join(RECIPES)}")


RECIPES = ("asymmetric", "symmetric")


def views_from_overrides(overrides: dict | None, recipe: str = "asymmetric") -> tuple[ViewAugment, ViewAugment]:
    """The recipe's views updated with `overrides`: `key` sets both views, `view1.key`/`view2.key` one."""
    v1, v2 = default_views(recipe)
    known = {f.name for f in fields(ViewAugment)}
    per_view: list[dict] = [{}, {}]
    for key, value in (overrides or {}).items():
        target, _, name = key.rpartition(".")
        if name not in known:
            raise UserError(f"unknown augmentation setting {key!r}; known: {', '.join(sorted(known))} "
                            "(prefix view1. or view2. to set one view)")
        if isinstance(value, list):
            value = tuple(value)
        if target in ("", "view1"):
            per_view[0][name] = value
        if target in ("", "view2"):
            per_view[1][name] = value
        if target not in ("", "view1", "view2"):
            raise UserError(f"augmentation setting {key!r}: the prefix must be view1. or view2.")
    return (replace(v1, **per_view[0]).validate("view1"), replace(v2, **per_view[1]).validate("view2"))


def views_as_dict(views: tuple[ViewAugment, ViewAugment]) -> dict:
    return {"view1": asdict(views[0]), "view2": asdict(views[1])}


def augment(frames: torch.Tensor, cfg: ViewAugment, size: int, generator: torch.Generator) -> torch.Tensor:
    """Augment a batch of frames (B×H×W uint8, or B×1×H×W) on their device → B×1×size×size float."""
    if frames.dim() == 3:
        frames = frames.unsqueeze(1)
    if frames.dim() != 4 or frames.shape[1] != 1:
        raise ValueError(f"expected B×H×W or B×1×H×W frames, got {tuple(frames.shape)}")
    b, _, h, w = frames.shape
    dev = frames.device
    x = frames.float() if frames.dtype != torch.uint8 else frames.float().div_(255.0)
    # One fixed block of uniforms per sample: the stream does not depend on which ops fire.
    u = torch.rand(b, 12, generator=generator, device=dev)

    x = _resized_crop_and_flip(x, cfg, size, u[:, 0:6])
    if cfg.intensity_p > 0:
        x = _intensity(x, cfg, u[:, 6], u[:, 7:10].clone())
    if cfg.blur_p > 0 and cfg.blur_sigma[1] > 0:
        x = _blur(x, cfg, u[:, 10], generator)
    if cfg.noise_p > 0 and cfg.noise_std > 0:
        std = torch.rand(b, generator=generator, device=dev) * cfg.noise_std
        apply = torch.rand(b, generator=generator, device=dev) < cfg.noise_p
        n = torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
        x = x * (1 + (std * apply).view(b, 1, 1, 1) * n)  # skimage's "speckle" model: x + x·n
    if cfg.solarize_p > 0:
        flip = (u[:, 11] < cfg.solarize_p).view(b, 1, 1, 1)
        x = torch.where(flip & (x >= cfg.solarize_threshold), 1 - x, x)
    return x.clamp_(0.0, 1.0)


def _resized_crop_and_flip(x: torch.Tensor, cfg: ViewAugment, size: int, u: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    lo, hi = cfg.crop_scale
    area = lo + (hi - lo) * u[:, 0]
    log_lo, log_hi = math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])
    ratio = (log_lo + (log_hi - log_lo) * u[:, 1]).exp()
    # torchvision retries until the box fits; clamping keeps it one vectorised draw per sample.
    fw = (area * ratio).sqrt().clamp(max=1.0)  # box size as a fraction of the frame
    fh = (area / ratio).sqrt().clamp(max=1.0)
    cx = (1 - fw) * (2 * u[:, 2] - 1)  # box centre in [-1, 1] coordinates, box inside the frame
    cy = (1 - fh) * (2 * u[:, 3] - 1)
    sx = torch.where(u[:, 4] < cfg.hflip_p, -fw, fw)  # a flip is a negative scale: no extra pass
    sy = torch.where(u[:, 5] < cfg.vflip_p, -fh, fh)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, cx], 1), torch.stack([zero, sy, cy], 1)], 1)
    # Bilinear sampling does not low-pass; an integer area-downscale first, small enough that the
    # smallest crop is still sampled at >= 1 input pixel per output pixel, limits the aliasing.
    k = int(min(h, w) * math.sqrt(lo * min(cfg.crop_ratio[0], 1 / cfg.crop_ratio[1])) // size)
    if k >= 2:
        x = F.avg_pool2d(x, k)
    grid = F.affine_grid(theta, [b, 1, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _intensity(x: torch.Tensor, cfg: ViewAugment, uapply: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    on = (uapply < cfg.intensity_p).to(x.dtype)
    # Factor 1 (the identity) where the op does not fire: no masking pass over the pixels.
    bright = 1 + on * cfg.brightness * (2 * u[:, 0] - 1)
    contrast = 1 + on * cfg.contrast * (2 * u[:, 1] - 1)
    gamma = torch.exp(on * math.log1p(cfg.gamma) * (2 * u[:, 2] - 1))
    x = x * bright.view(b, 1, 1, 1)
    mean = x.mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * contrast.view(b, 1, 1, 1) + mean).clamp_(0.0, 1.0)
    return x.pow(gamma.view(b, 1, 1, 1))


def _blur(x: torch.Tensor, cfg: ViewAugment, uapply: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    scale = w / _SIGMA_REFERENCE_SIZE
    lo, hi = cfg.blur_sigma[0] * scale, cfg.blur_sigma[1] * scale
    sigma = lo + (hi - lo) * torch.rand(b, generator=generator, device=x.device)
    sigma = torch.where(uapply < cfg.blur_p, sigma, torch.zeros_like(sigma)).clamp_min(1e-3)
    radius = max(1, math.ceil(3 * hi))
    if radius >= min(h, w):
        radius = min(h, w) - 1
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    # The batch becomes the channels of one grouped conv: one kernel per sample, one launch per axis.
    y = F.pad(x.view(1, b, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(b, 1, 1, -1), groups=b)
    y = F.conv2d(y, kernel.view(b, 1, -1, 1), groups=b)
    return y.view(b, 1, h, w)
