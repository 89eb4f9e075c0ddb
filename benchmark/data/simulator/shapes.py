"""2D shape primitives on a coordinate grid, painted back to front into an echo map and an
attenuation map. Signed distances give anti-aliased edges one pixel wide at any resolution."""
from __future__ import annotations

import numpy as np


class Canvas:
    """An S×S map of tissue echogenicity (0 = anechoic fluid, 1 = bone) and of acoustic attenuation
    (per unit of depth; bone is high, so it casts a shadow) covering [-extent, extent]²."""

    def __init__(self, size: int, extent: float, background: float):
        axis = np.linspace(-extent, extent, size, dtype=np.float32)
        self.y, self.x = np.meshgrid(axis, axis, indexing="ij")
        self.pixel = np.float32(2 * extent / (size - 1))
        self.echo = np.full((size, size), background, np.float32)
        self.atten = np.zeros((size, size), np.float32)

    def _paint(self, sdf: np.ndarray, echo: float, atten: float | None) -> None:
        cover = np.clip(0.5 - sdf / self.pixel, 0.0, 1.0)
        self.echo += cover * (np.float32(echo) - self.echo)
        if atten is not None:
            self.atten += cover * (np.float32(atten) - self.atten)

    def ellipse(self, center, axes, angle: float, echo: float, atten: float | None = 0.0) -> None:
        self._paint(ellipse_sdf(self.x, self.y, center, axes, angle), echo, atten)

    def ring(self, center, axes, angle: float, width: float, echo: float, atten: float | None = 0.0) -> None:
        self._paint(np.abs(ellipse_sdf(self.x, self.y, center, axes, angle)) - width / 2, echo, atten)

    def tube(self, points, radius: float, echo: float, atten: float | None = 0.0) -> None:
        """A capsule along a polyline (a vessel lumen, a wall, a valve leaflet)."""
        self._paint(polyline_sdf(self.x, self.y, points) - radius, echo, atten)

    def vessel(self, points, radius: float, wall: float, wall_echo: float, lumen_echo: float) -> None:
        """A blood vessel seen along its length: a bright wall around a dark lumen."""
        d = polyline_sdf(self.x, self.y, points)
        self._paint(d - radius - wall, wall_echo, 0.0)
        self._paint(d - radius, lumen_echo, 0.0)

    def texture(self, field: np.ndarray) -> None:
        """Multiply the echo map by a smooth tissue-texture field (same shape)."""
        self.echo *= field


def ellipse_sdf(x, y, center, axes, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = x - center[0], y - center[1]
    u = (c * dx + s * dy) / axes[0]
    v = (-s * dx + c * dy) / axes[1]
    # Approximate distance (exact for circles): good enough for one-pixel anti-aliasing.
    return ((np.sqrt(u * u + v * v) - 1.0) * min(axes)).astype(np.float32)


def polyline_sdf(x, y, points) -> np.ndarray:
    pts = np.asarray(points, np.float32)
    best = None
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:], strict=True):
        bx, by = x1 - x0, y1 - y0
        px, py = x - x0, y - y0
        t = np.clip((px * bx + py * by) / max(bx * bx + by * by, 1e-12), 0.0, 1.0)
        d2 = (px - t * bx) ** 2 + (py - t * by) ** 2
        best = d2 if best is None else np.minimum(best, d2)
    return np.sqrt(best)


def bezier(p0, p1, p2, n: int = 6) -> np.ndarray:
    """Points on a quadratic Bézier curve (a curved vessel or arch)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    p0, p1, p2 = (np.asarray(p, np.float32) for p in (p0, p1, p2))
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
