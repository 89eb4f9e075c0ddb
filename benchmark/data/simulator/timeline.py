"""What happens over a clip: the plane level (still or sweeping), the heartbeat, the probe's
drift and rotation, the gain, and the scanner settings. Pure functions of an RNG and the times."""
from __future__ import annotations

import numpy as np

from benchmark.data.simulator.config import OTHER_LEVEL, PLANES
from benchmark.data.simulator.render import Fan, Look
from benchmark.data.simulator.scanners import GENERIC, ScannerProfile

TOP_LEVEL = len(PLANES) - 1
SYSTOLE = 0.4  # fraction of the cardiac cycle


def lowest_level(include_other: bool) -> int:
    return OTHER_LEVEL if include_other else 0


def label_of(level: np.ndarray) -> np.ndarray:
    """Class index of each (continuous) level: the nearest plane; the abdomen is the last class."""
    n = np.rint(level).astype(np.int64)
    return np.where(n == OTHER_LEVEL, len(PLANES), n)


def blend(level: np.ndarray, lowest: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Between two levels the section shows some of both: (nearest, neighbour, neighbour weight).
    Within 0.2 of a level the frame is pure; at the midpoint both weigh the same."""
    near = np.rint(level).astype(np.int64)
    d = level - near
    other = near + np.where(d >= 0, 1, -1)
    w = np.clip((np.abs(d) - 0.2) / 0.3, 0, 1) * 0.5
    w = np.where((other < lowest) | (other > TOP_LEVEL), 0.0, w)
    return near, np.clip(other, lowest, TOP_LEVEL), w


def clip_levels(rng: np.random.Generator, times: np.ndarray, sweep: float, lowest: int) -> np.ndarray:
    """The level of each frame: a still view with a slight wobble, or (probability `sweep`) a
    sweep through several levels as operators do."""
    lo, hi = lowest - 0.45, TOP_LEVEL + 0.45
    duration = max(float(times[-1] - times[0]), 1e-6)
    s = (times - times[0]) / duration
    if rng.random() < sweep:
        span = rng.uniform(1.2, 3.0)
        start = rng.uniform(lo, hi)
        direction = 1 if (hi - start) > (start - lo) else -1
        span = min(span, (hi - start) if direction > 0 else (start - lo))
        return start + direction * span * (3 * s ** 2 - 2 * s ** 3)
    plane = rng.integers(lowest, TOP_LEVEL + 1)
    wobble = 0.12 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * times + rng.uniform(0, 2 * np.pi))
    return np.clip(plane + rng.uniform(-0.1, 0.1) + wobble, lo, hi)


def heartbeat(rng: np.random.Generator, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(contraction 0..1, weight of the systolic drawing) per frame, at 120–160 bpm."""
    phase = (rng.uniform(0, 1) + rng.uniform(120, 160) / 60 * times) % 1.0
    return cardiac_state(phase)


def cardiac_state(phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    contraction = np.where(phase < SYSTOLE, 0.5 - 0.5 * np.cos(2 * np.pi * phase / SYSTOLE), 0.0)
    # Valves switch quickly: a short cross-fade at the start and end of systole.
    systolic = np.clip(np.minimum(phase, SYSTOLE - phase) / 0.04 + 0.5, 0, 1)
    return contraction.astype(np.float32), systolic.astype(np.float32)


def sample_fan(rng: np.random.Generator, scanner: ScannerProfile = GENERIC) -> Fan:
    """The sector of a clip: its opening and apex drawn from the scanner's ranges."""
    apex = rng.uniform(*scanner.apex_y)
    return Fan(half_angle=float(np.deg2rad(rng.uniform(*scanner.half_angle_deg))), apex_y=float(apex),
               near=float(0.03 - apex), far=float(0.985 - apex))


def sample_look(rng: np.random.Generator, noise: float, scanner: ScannerProfile = GENERIC) -> Look:
    """The scanner settings of a clip: tissue and maternal wall of the scan, the gain curve, dynamic range,
    speckle and overlays of the machine (drawn in the same order for every scanner)."""
    att = rng.uniform(1.0, 2.2)
    layers = rng.integers(2, 5)
    near_field = np.stack([rng.uniform(0.04, 0.17, layers), rng.uniform(0.008, 0.02, layers),
                           rng.uniform(0.15, 0.6, layers)], axis=1)
    return Look(attenuation=float(att), tgc=float(att * rng.uniform(*scanner.tgc_ratio)),
                dynamic_range=float(rng.uniform(*scanner.dynamic_range)), persistence=float(rng.uniform(0.5, 0.85)),
                haze=float(0.0015 * noise * rng.uniform(0.5, 1.5)), noise_floor=float(0.001 * noise),
                blur=float(0.3 + 0.5 * noise * rng.uniform(0.5, 1.5)), near_field=near_field,
                overlay_seed=int(rng.integers(2**31)), gamma=scanner.gamma, speckle_grain=scanner.speckle_grain,
                overlay=scanner.overlay)


def base_pose(rng: np.random.Generator, fan: Fan, depth_offset: float = 0.0) -> dict:
    """Where the thorax lies in the sector, its size and its orientation (any: the apex may point
    anywhere, and the fetal left may be on either side of the screen). `depth_offset` moves it along
    the beam, so that a fan whose apex lies far above the image still has the heart mid-image."""
    depth = rng.uniform(0.5, 0.58) + depth_offset
    psi = rng.uniform(-0.12, 0.12)
    return {"center": np.array([0.5 + depth * np.sin(psi), fan.apex_y + depth * np.cos(psi)]),
            "scale": rng.uniform(0.23, 0.3), "rotation": rng.uniform(0, 2 * np.pi),
            "mirror": 1.0 if rng.random() < 0.5 else -1.0}


def probe_motion(rng: np.random.Generator, times: np.ndarray, motion: float) -> dict:
    """Smooth drift of translation (image units), rotation (radians) and zoom, amplitude ∝ motion."""
    def wave(amp: float) -> np.ndarray:
        out = np.zeros_like(times)
        for _ in range(2):
            out += amp * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * times + rng.uniform(0, 2 * np.pi))
        return out
    return {"shift": np.stack([wave(0.02 * motion), wave(0.02 * motion)], axis=1),
            "rotation": wave(0.07 * motion), "zoom": 1 + wave(0.02 * motion)}


def gain_curve(rng: np.random.Generator, times: np.ndarray) -> np.ndarray:
    """Overall gain in dB: an offset, a slow drift and sometimes a step (the operator turns the knob)."""
    g = rng.uniform(-6, 0) + 1.5 * np.sin(2 * np.pi * rng.uniform(0.02, 0.2) * times + rng.uniform(0, 6.3))
    if rng.random() < 0.3:
        g = g + np.where(times > rng.uniform(times[0], times[-1] + 1e-6), rng.uniform(-4, 4), 0.0)
    return g.astype(np.float32)
