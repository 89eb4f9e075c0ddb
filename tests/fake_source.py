"""A tiny in-memory Source for tests of the cache and CLI plumbing (no simulator, no files)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from benchmark.data.source import Clip, Skipped, Source
from benchmark.data.spec import register_source


@register_source("fake", needs_path=False)
@dataclass
class FakeSource(Source):
    resolution: int = 16
    subjects: int = 6
    frames: int = 4
    seed: int = 0
    bad_every: int = 0  # every k-th video is an unreadable "file"
    delay: float = 0.0  # seconds per clip, to make a build slow enough to kill
    roles: tuple[str, ...] = ("pretrain", "downstream")

    def fingerprint_parts(self, role: str) -> dict:
        return {"subjects": self.subjects, "frames": self.frames, "seed": self.seed, "bad_every": self.bad_every}

    def class_names(self, role: str) -> list[str]:
        return ["a", "b", "c"]

    def items(self, role: str):
        rng = np.random.default_rng([self.seed, role == "downstream"])
        for s in range(self.subjects):
            if self.delay:
                time.sleep(self.delay)
                marker = os.environ.get("FAKE_SOURCE_PROGRESS")
                if marker:
                    with open(marker, "a") as f:
                        f.write(f"{s}\n")
            if self.bad_every and s % self.bad_every == self.bad_every - 1:
                yield Skipped(f"video{s}.mp4", "truncated stream")
                continue
            frames = rng.integers(0, 256, (self.frames, self.resolution, self.resolution), dtype=np.uint8)
            labels = rng.integers(0, 3, self.frames) if role == "downstream" else None
            yield Clip(frames=frames, video_id=f"{role[0]}v{s}", subject_id=f"{role[0]}s{s}", labels=labels,
                       path=f"video{s}.mp4")
