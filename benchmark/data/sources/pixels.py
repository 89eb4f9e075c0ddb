"""Pixel operations shared by every file-based source: grayscale uint8, region-of-interest crop, square
resize to the cache resolution.

`--crop auto` on a clip keeps the bounding box of the largest region whose pixels change across
frames: the scan sector moves, while UI overlays, text, calipers and borders stay still. A single
image has no motion, so there it keeps the largest bright connected region instead (the sector
against its dark background; small text blocks are separate, smaller regions).
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Any numeric array → uint8. 8-bit data is kept as is; wider or float data is stretched over the
    clip's own range (16-bit ultrasound stores fewer than 16 meaningful bits)."""
    if frames.dtype == np.uint8:
        return frames
    if frames.dtype == bool:
        return frames.astype(np.uint8) * 255
    data = frames.astype(np.float32)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(frames.shape, np.uint8)
    lo, hi = float(data[finite].min()), float(data[finite].max())
    if np.issubdtype(frames.dtype, np.floating) and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0  # already normalised intensities
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((np.nan_to_num(data, nan=lo) - lo) * scale + 0.5, 0, 255).astype(np.uint8)


def to_gray(frames: np.ndarray, channels_last: bool | None = None) -> np.ndarray:
    """T×H×W or T×H×W×C (C in 1, 3, 4) → T×H×W uint8 (ITU-R 601 luma for colour)."""
    frames = np.asarray(frames)
    if channels_last is None:
        channels_last = frames.ndim == 4
    if channels_last:
        c = frames.shape[-1]
        if c == 1:
            frames = frames[..., 0]
        elif c in (3, 4):
            luma = frames[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            if frames.dtype == np.uint8:
                return np.clip(luma + 0.5, 0, 255).astype(np.uint8)
            return to_uint8(luma)
        else:
            raise ValueError(f"{c} channels: expected 1 (gray), 3 (RGB) or 4 (RGBA)")
    if frames.ndim != 3:
        raise ValueError(f"frames of shape {frames.shape}: expected T×H×W or T×H×W×C")
    return to_uint8(frames)


def _largest_component_box(mask: np.ndarray) -> Box | None:
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    biggest = int(np.argmax(sizes)) + 1
    ys, xs = ndimage.find_objects(labels)[biggest - 1]
    return ys.start, ys.stop, xs.start, xs.stop


def _big_enough(box: Box | None, shape: tuple[int, int], share: float = 0.05) -> bool:
    if box is None:
        return False
    return (box[1] - box[0]) * (box[3] - box[2]) >= share * shape[0] * shape[1]


def bright_region_box(image: np.ndarray) -> Box | None:
    """Bounding box of the largest connected non-dark region of one H×W image."""
    threshold = max(8.0, 0.1 * float(np.percentile(image, 99)))
    mask = ndimage.binary_opening(image > threshold, iterations=2)
    box = _largest_component_box(mask)
    return box if _big_enough(box, image.shape) else None


def moving_region_box(frames: np.ndarray) -> Box | None:
    """Bounding box of the largest region that changes across a T×H×W clip, or None if too little moves."""
    if frames.shape[0] < 2:
        return None
    sample = frames[np.linspace(0, frames.shape[0] - 1, min(frames.shape[0], 32)).astype(int)]
    spread = sample.max(axis=0).astype(np.int16) - sample.min(axis=0)
    # Codec noise makes static pixels flicker by a few levels; the sector varies far more.
    threshold = max(6.0, 0.2 * float(np.percentile(spread, 99)))
    mask = ndimage.binary_closing(spread > threshold, iterations=3)
    mask = ndimage.binary_opening(mask, iterations=1)
    box = _largest_component_box(mask)
    return box if _big_enough(box, frames.shape[1:]) else None


def crop_box(frames: np.ndarray, crop: str) -> Box:
    """The region to keep for a T×H×W uint8 clip (the whole frame for crop='none' or when nothing is found)."""
    full = (0, frames.shape[1], 0, frames.shape[2])
    if crop == "none":
        return full
    box = moving_region_box(frames)
    if box is None:
        box = bright_region_box(frames.max(axis=0) if frames.shape[0] > 1 else frames[0])
    return box or full


def square_resize(frames: np.ndarray, box: Box, resolution: int) -> np.ndarray:
    """Crop each frame to `box`, pad the shorter side with black to a square (keeping the aspect
    ratio of the anatomy) and resize to resolution × resolution."""
    y0, y1, x0, x1 = box
    crop = frames[:, y0:y1, x0:x1]
    t, h, w = crop.shape
    side = max(h, w)
    out = np.empty((t, resolution, resolution), np.uint8)
    padded = np.zeros((side, side), np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    for k in range(t):
        padded[top:top + h, left:left + w] = crop[k]
        # Pillow's resize filters over the whole source footprint when shrinking (anti-aliased).
        out[k] = np.asarray(Image.fromarray(padded).resize((resolution, resolution), Image.BILINEAR))
    return out


def prepare_frames(frames: np.ndarray, crop: str, resolution: int) -> np.ndarray:
    """T×H×W uint8 at native size → T×res×res uint8, cropped per `crop`."""
    return square_resize(frames, crop_box(frames, crop), resolution)
