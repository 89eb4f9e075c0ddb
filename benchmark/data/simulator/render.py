"""Ultrasound image formation for a batch of frames, vectorised over the frames (torch on CPU).

Frames are formed the way a scanner does it: along beams. Each frame's anatomy is sampled on a
polar (beam angle × depth) grid through the probe pose, so bone shadows, depth attenuation and
speckle all act along the beams; the polar image is then scan-converted into the fan (sector)
with black outside. Speckle is complex Gaussian noise filtered by the point-spread function
(fully developed, multiplicative, granular, partly persistent between frames); the display is
log-compressed like a B-mode image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.simulator.anatomy import EXTENT


@dataclass(frozen=True)
class Fan:
    """Sector geometry in image units (the image is 1 wide, the apex above the top edge)."""

    half_angle: float  # radians
    apex_y: float
    near: float  # depth of the first sample
    far: float  # depth of the last sample


@dataclass(frozen=True)
class Look:
    """Scanner settings of one clip (or one image)."""

    attenuation: float  # tissue attenuation per image unit of depth (amplitude, natural log)
    tgc: float  # time-gain compensation per image unit (compensates part of it)
    dynamic_range: float  # dB shown between black and white
    persistence: float  # correlation of the speckle between frames, 0..1
    haze: float  # clutter added to every echo (fills dark blood pools with grey)
    noise_floor: float  # electronic noise amplitude
    blur: float  # extra Gaussian blur, in pixels at 128 px
    near_field: np.ndarray  # (n, 3) bright layers of the maternal wall: depth, width, echo
    overlay_seed: int  # burnt-in text and depth marks
    gamma: float = 1.0  # display map exponent (a machine's grey map); 1 = none
    speckle_grain: float = 1.0  # point-spread function size relative to the generic probe's
    overlay: int = 0  # on-screen layout (see `_overlay`)


@dataclass
class FramePlan:
    """Per-frame inputs, each an array over the T frames."""

    key_weights: np.ndarray  # (T, K) blend of the anatomy key maps
    center: np.ndarray  # (T, 2) thorax centre in image units
    scale: np.ndarray  # (T,) image units per thorax unit
    rotation: np.ndarray  # (T,) radians
    mirror: np.ndarray  # (T,) +1 or -1 (fetal left on the screen's left or right)
    contraction: np.ndarray  # (T,) 0 = relaxed, 1 = end-systole
    gain: np.ndarray  # (T,) overall gain in dB


def render_frames(keys: np.ndarray, plan: FramePlan, heart: tuple[np.ndarray, np.ndarray, float],
                  fan: Fan, look: Look, resolution: int, rng: np.random.Generator) -> np.ndarray:
    """keys: (K, 2, S, S) echo and attenuation maps; heart: (ventricle centre, atrial centre, radius)
    in thorax units. Returns T×R×R uint8 frames."""
    # One clip's tensors are small: intra-op threads cost more in hand-off than they save
    # (measured 2× slower with 2 threads on a busy 2-core machine); parallelism belongs across clips.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _render(keys, plan, heart, fan, look, resolution, rng)
    finally:
        torch.set_num_threads(threads)


def _render(keys: np.ndarray, plan: FramePlan, heart: tuple[np.ndarray, np.ndarray, float],
            fan: Fan, look: Look, resolution: int, rng: np.random.Generator) -> np.ndarray:
    t = plan.key_weights.shape[0]
    res = resolution
    px = res / 128  # physical sizes are given in pixels at 128 px
    w = torch.from_numpy(plan.key_weights.astype(np.float32))
    k = torch.from_numpy(keys)
    maps = torch.einsum("tk,kcij->tcij", w, k)

    # Polar sampling grid in image units, then through each frame's pose into thorax units.
    theta = torch.linspace(-fan.half_angle, fan.half_angle, res)
    depth = torch.linspace(fan.near, fan.far, res)
    img_x = 0.5 + depth[:, None] * torch.sin(theta)[None, :]
    img_y = fan.apex_y + depth[:, None] * torch.cos(theta)[None, :]
    cx, cy = (torch.from_numpy(plan.center[:, i].astype(np.float32))[:, None, None] for i in (0, 1))
    rot = torch.from_numpy(plan.rotation.astype(np.float32))[:, None, None]
    scale = torch.from_numpy(plan.scale.astype(np.float32))[:, None, None]
    mirror = torch.from_numpy(plan.mirror.astype(np.float32))[:, None, None]
    dx, dy = img_x - cx, img_y - cy
    ax = (torch.cos(rot) * dx + torch.sin(rot) * dy) / scale * mirror
    ay = (-torch.sin(rot) * dx + torch.cos(rot) * dy) / scale
    ax, ay = _heartbeat_warp(ax, ay, heart, torch.from_numpy(plan.contraction.astype(np.float32)))
    grid = torch.stack([ax, ay], dim=-1) / EXTENT
    sampled = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=True)
    echo, atten = sampled[:, 0], sampled[:, 1]

    echo = torch.maximum(echo, torch.from_numpy(_near_field(look, depth.numpy(), theta.numpy(), rng)))
    # Bone shadows: transmission falls with the attenuation met so far along each beam.
    step = (fan.far - fan.near) / (res - 1) / scale
    shadow = torch.exp(-(torch.cumsum(atten, dim=1) - atten) * step)
    gain_depth = torch.exp(-(look.attenuation - look.tgc) * depth)[None, :, None]
    gain = torch.from_numpy((10 ** (plan.gain / 20)).astype(np.float32))[:, None, None]
    amplitude = (echo + look.haze) * shadow * gain_depth * gain
    speckle = _speckle(t, res, look.persistence, px * look.speckle_grain, rng)
    # Electronic noise, amplified with depth by the TGC: the speckle field turned upside down is
    # independent of it where it lands, and costs no new random numbers.
    floor = look.noise_floor * 0.3 * torch.exp(look.tgc * depth)[None, :, None]
    amplitude = amplitude * speckle + floor * speckle.flip(1, 2)

    db = 20 * torch.log10(amplitude + 1e-6)
    polar = ((db + look.dynamic_range) / look.dynamic_range).clamp(0, 1)
    if look.gamma != 1.0:
        polar = polar ** look.gamma
    if look.blur > 0:
        polar = _gaussian_blur(polar[:, None], (look.blur * px, look.blur * px * 0.6))[:, 0]
    image = F.grid_sample(polar[:, None], _scan_grid(fan, res).expand(t, -1, -1, -1), mode="bilinear",
                          padding_mode="zeros", align_corners=True)[:, 0]
    image = image * torch.from_numpy(_fan_mask(fan, res))
    image = torch.maximum(image, torch.from_numpy(_overlay(fan, res, look.overlay_seed, look.overlay)))
    return (image * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy()


def _heartbeat_warp(ax, ay, heart, contraction):
    """Ventricles shrink in systole while the atria fill, and the reverse: sampling further from a
    chamber's centre makes what is drawn there look smaller."""
    ventricles, atria, radius = heart
    c = contraction[:, None, None]
    for centre, amp in ((ventricles, 0.14 * c), (atria, -0.08 * c)):
        qx, qy = ax - float(centre[0]), ay - float(centre[1])
        f = 1 + amp * torch.exp(-(qx * qx + qy * qy) / (radius * radius))
        ax, ay = float(centre[0]) + qx * f, float(centre[1]) + qy * f
    return ax, ay


def _speckle(t: int, res: int, persistence: float, px: float, rng: np.random.Generator) -> torch.Tensor:
    """Multiplicative speckle with mean power 1: complex Gaussian scatterers filtered by the PSF
    (short axially, wider laterally), a part of them persisting from frame to frame."""
    # torch's normal sampler is ~2.5× faster than numpy's here; seeded from the clip's RNG.
    gen = torch.Generator().manual_seed(int(rng.integers(2**63)))
    fresh = torch.randn((2, t, res, res), generator=gen)
    still = torch.randn((2, 1, res, res), generator=gen)
    z = persistence * still + float(np.sqrt(1 - persistence ** 2)) * fresh
    z = _gaussian_blur(z.reshape(2 * t, 1, res, res), (0.55 * px, 0.9 * px)).reshape(2, t, res, res)
    power = z[0] ** 2 + z[1] ** 2
    return torch.sqrt(power / power.mean())


def _gaussian_blur(x: torch.Tensor, sigma: tuple[float, float]) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W); sigma = (along H, along W) in pixels. A weighted
    sum of shifted copies: for kernels this small it is several times faster than conv2d on CPU."""
    for dim, s in zip((2, 3), sigma, strict=True):
        if s < 0.2:
            continue
        r = max(1, int(np.ceil(2.5 * s)))
        g = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * s * s))
        g = g / g.sum()
        pad = (0, 0, r, r) if dim == 2 else (r, r, 0, 0)
        padded = F.pad(x, pad, mode="replicate")
        n = x.shape[dim]
        out = padded.narrow(dim, 0, n) * float(g[0])
        for i in range(1, 2 * r + 1):
            out += padded.narrow(dim, i, n) * float(g[i])
        x = out
    return x


def _scan_grid(fan: Fan, res: int) -> torch.Tensor:
    """For each output pixel, where it falls in the polar image (grid_sample coordinates)."""
    u = (torch.arange(res, dtype=torch.float32) + 0.5) / res
    y, x = torch.meshgrid(u, u, indexing="ij")
    r = torch.sqrt((x - 0.5) ** 2 + (y - fan.apex_y) ** 2)
    th = torch.atan2(x - 0.5, y - fan.apex_y)
    gx = th / fan.half_angle
    gy = (r - fan.near) / (fan.far - fan.near) * 2 - 1
    return torch.stack([gx, gy], dim=-1)[None]


def _fan_mask(fan: Fan, res: int) -> np.ndarray:
    u = (np.arange(res, dtype=np.float32) + 0.5) / res
    y, x = np.meshgrid(u, u, indexing="ij")
    r = np.hypot(x - 0.5, y - fan.apex_y)
    th = np.abs(np.arctan2(x - 0.5, y - fan.apex_y))
    edge = 1.0 / res
    inside = np.clip((fan.half_angle - th) * r / edge, 0, 1) * np.clip((fan.far - r) / edge, 0, 1)
    return (inside * np.clip((r - fan.near) / edge, 0, 1)).astype(np.float32)


def _near_field(look: Look, depth: np.ndarray, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Maternal abdominal and uterine wall: bright layers just under the probe."""
    prof = np.zeros_like(depth)
    for d, width, echo in look.near_field:
        prof = np.maximum(prof, echo * np.exp(-(((depth - d) / width) ** 2)))
    lateral = 1 + 0.3 * np.sin(theta * 5 + look.overlay_seed % 7)
    return (prof[:, None] * lateral[None, :]).astype(np.float32)


# On-screen layouts of `_overlay`: where the text blocks go (top-left corner cells, in glyph cells
# from the top-left; negative = from the right/bottom), which sides of the sector carry depth marks,
# and whether a grey bar stands at the right edge.
OVERLAYS = (
    {"text": [(2, 2)], "marks": (1,), "bar": False},  # the generic layout
    {"text": [(2, -30)], "marks": (-1,), "bar": False},
    {"text": [(-16, 2)], "marks": (1,), "bar": True},
    {"text": [(2, 2), (2, -30)], "marks": (1, -1), "bar": False},
)


def _overlay(fan: Fan, res: int, seed: int, layout: int = 0) -> np.ndarray:
    """Burnt-in annotations: blocks of text-like glyphs and a depth scale beside the fan, placed as the
    machine's `layout` (an index into OVERLAYS) places them."""
    rng = np.random.default_rng(seed)
    out = np.zeros((res, res), np.float32)
    cell = max(1, round(res / 64))
    level = rng.uniform(0.55, 0.85)
    rows, cols = rng.integers(1, 3), rng.integers(4, 8)
    style = OVERLAYS[layout]
    for top, left in style["text"]:
        top, left = top % (res // cell), left % (res // cell)
        for r in range(rows):
            for c in range(cols):
                glyph = rng.random((5, 3)) < 0.55
                y0, x0 = cell * (top + r * 7), cell * (left + c * 4)
                block = np.kron(glyph, np.ones((cell, cell))) * level
                h, w = out[y0:y0 + 5 * cell, x0:x0 + 3 * cell].shape
                out[y0:y0 + h, x0:x0 + w] = block[:h, :w]
    # Depth marks every ~1 cm along a border of the sector (right: +1, left: -1).
    for side in style["marks"]:
        for d in np.arange(fan.near + 0.1, fan.far, 0.1):
            x = 0.5 + d * np.sin(fan.half_angle) + 2.5 / res if side > 0 else \
                0.5 - d * np.sin(fan.half_angle) - 2.5 / res
            y = fan.apex_y + d * np.cos(fan.half_angle)
            i, j = int(y * res), int(x * res)
            if 0 <= i < res and 0 <= j < res:
                out[i:i + cell, j:j + cell] = level
    if style["bar"]:  # a grey-scale bar: the display map, dark at the bottom
        x0 = res - 3 * cell
        out[res // 4:3 * res // 4, x0:x0 + 2 * cell] = np.linspace(level, 0.1, 3 * res // 4 - res // 4)[:, None]
    return out
